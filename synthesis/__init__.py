"""Loss and Synthesis (L-BFGS-B) on scattering statistics: see the synthesis issue."""
