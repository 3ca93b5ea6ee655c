//! (skeleton: the scenario runner)
