"""The dataset store: its layout, versions, writer lock, write path and readers, local or on object storage."""
