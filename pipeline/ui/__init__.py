"""The live health page (`clusterpulse ui`, started by `clusterpulse run`)."""
