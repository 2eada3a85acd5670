"""Networks on the HEALPix sphere (HealpixUNet, CNN, GCNN, HealpixViT): see the networks issue."""
