"""Host experiments that check replay predictions against the real kernel."""
