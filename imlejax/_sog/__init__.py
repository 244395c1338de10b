"""Sum-of-Gamma noise: the exact CDF (``_cdf``), the inverse-CDF table (``_table``), the sampler
(``_sampler``)."""
