"""Starting workers (``Cluster``) and whole local clusters (``SchedulerClusterCombo``)."""
