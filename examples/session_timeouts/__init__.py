"""Session time-outs: an application's own expiring keys, handled once each by the pipeline."""
