"""Building blocks shared by detectors: k-NN, coreset, Gaussians, blur, embeddings."""
