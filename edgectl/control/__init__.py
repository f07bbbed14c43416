"""Controllers that sit beside dispatch in the daemon's cycle: :mod:`edgectl.control.transitions`
(islanding, reconnection, black start)."""
