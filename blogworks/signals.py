"""The signal the site and its machinery share.

`posts_changed` is sent after any write that readers could see: a post or tag saved or deleted, a
post's tags changed, and (explicitly, since bulk writes send no model signals) after an import or a
tag merge. The page cache listens to it.
"""

from django.dispatch import Signal

posts_changed = Signal()
