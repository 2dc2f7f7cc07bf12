# itest_env.sh: check the environment every tests/integration/*.sh needs (sourced, not run).
#
# ctest sets ORCH_SOURCE_DIR, ORCH_BINARY_DIR, ORCH_FIXTURES and ORCH_GEN_FIXTURES
# (tests/CMakeLists.txt). Run by hand without them, a script stops here with a message saying
# how to run it, instead of failing later on an empty path.
for itest_var in ORCH_SOURCE_DIR ORCH_BINARY_DIR ORCH_FIXTURES ORCH_GEN_FIXTURES; do
    if [ -z "${!itest_var:-}" ]; then
        cat >&2 <<MSG
$(basename "$0"): $itest_var is not set. Run integration tests through ctest:
    (cd build && ctest -R integration_$(basename "$0" .sh) --output-on-failure)
or set the four variables yourself, e.g. from the repository root:
    ORCH_SOURCE_DIR=\$PWD ORCH_BINARY_DIR=\$PWD/build ORCH_FIXTURES=\$PWD/tests/fixtures \\
    ORCH_GEN_FIXTURES=\$PWD/build/tests/fixtures bash $0
MSG
        exit 2
    fi
done
unset itest_var
