"""Where the user state class lived before the model moved to :mod:`streamrec.model`: user states
that the per-event job pickled into checkpoints and savepoints name this module, so it stays
importable for them."""

from streamrec.model.model import UserState, _restore_user

__all__ = ["UserState", "_restore_user"]
