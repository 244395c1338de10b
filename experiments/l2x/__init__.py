"""Learning to explain (appendix C.2): BeerAdvocate-format pipeline and the L2X synthetic benchmarks."""
