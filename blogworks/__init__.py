"""blogworks: the machinery behind linkblog.py.

linkblog.py declares the site (settings, models, admin, pages, feeds, API, commands); this package
does the work that is not a declaration. It never imports linkblog: models and querysets come in as
arguments, so it survives `nanodjango convert` unchanged (the convert plugin copies it as files).
"""
