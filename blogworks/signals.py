"""The signals the site and its machinery share.

`posts_changed` is sent after any write that readers could see: a post or tag saved or deleted, a
post's tags changed, and (explicitly, since bulk writes send no model signals) after an import or a
tag merge. The page cache listens to it.

`links_changed` (`link_ids`) is sent when Links' states or archived copies change (bulk updates send
no model signals): the stored listing cards of the posts holding them show dead links' copies.
"""

from django.dispatch import Signal

posts_changed = Signal()
links_changed = Signal()
