"""Import aliases that let code written for other NAS tools run on archsearch (see `archsearch.compat.nni`)."""
