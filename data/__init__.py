"""ECG data: WFDB reading, PhysioNet download, labels, preprocessing, windows, splits, the window store."""
