trigger RoutingEmailMessageTrigger on EmailMessage (after insert) {
    new EmailMessageRoutingHandler().run();
}
