"""One module per command line sub-command; heavy imports live inside the functions."""
