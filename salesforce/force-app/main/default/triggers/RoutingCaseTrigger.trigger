trigger RoutingCaseTrigger on Case (after insert, after update) {
    new CaseRoutingHandler().run();
}
