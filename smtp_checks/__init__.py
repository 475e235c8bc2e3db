"""smtp-checks: one namespace for the installed distribution.

Its sub-packages are the top-level folders of the checkout (`shared`, `scheduler`,
`workers`, `consumer`, `cli`, `demo`), linked here so that the code imports them as
`smtp_checks.shared`... and the installed packages collide with nothing else.
"""
