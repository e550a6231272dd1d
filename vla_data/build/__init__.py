"""Building a store from source episodes: which episodes go in, their splits, and the build job."""
