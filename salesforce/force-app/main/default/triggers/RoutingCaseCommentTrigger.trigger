trigger RoutingCaseCommentTrigger on CaseComment (after insert) {
    new CaseCommentRoutingHandler().run();
}
