"""Trading: the model API and models, the overseer, risk, accounts and the mock exchange."""
