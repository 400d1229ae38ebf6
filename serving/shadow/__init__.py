"""The shadow challenger: a second version scores mirrored answers after they are sent, never seen by clients."""
