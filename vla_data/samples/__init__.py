"""Training samples from a store: windows and chunks, the torch dataset, batches, augmentation."""
