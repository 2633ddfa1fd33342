"""The evaluation statistics of METHOD.md step 7, pure like core/: accuracy and win-loss with
bootstrap CIs and sign tests (stats), the paper's claims (claims), judge agreement with the
demo oracle (agreement). core/ holds the method itself."""
