trigger InteractionRoutingQueueTrigger on Interaction_Routing_Queue__c (before insert, before update, after insert, after update, after delete, after undelete) {
    new InteractionRoutingQueueHandler().run();
}
