"""Review tooling: the program run offline under Pulumi's mocks, the policy pack through the real
analyzer servicer, and the plan (`aksinf plan`) built from both."""
