#!/usr/bin/env bash
# Run the timing-sensitive tests (those that send signals, kill processes, or wait on files) N times in a row
# while CPU-bound processes run beside them, and stop at the first failure, printing how many runs passed.
#
#   scripts/stress_tests.sh [-n N] [-b BURNERS] [-g GROUP] [-- PYTEST-ARGS...]
#
#   -n N        runs (default 30)
#   -b BURNERS  CPU-bound processes (`python -c 'while True: pass'`) beside the tests (default 2)
#   -g GROUP    which tests (default all): signal (SIGINT, waits on a marker file, in-process interruptions),
#               kill (SIGKILL at fault points, a killed torchrun rank), ray (the Ray executor's SIGINT and
#               SIGKILL tests; skipped where Ray is not installed), all (the three)
#   -- ARGS     pytest node ids or options instead of a group, e.g. -- tests/test_cli.py -k ctrl_c
#
# PYTHON picks the interpreter (default: .venv/bin/python if there is one, else python); this checkout is put
# first on PYTHONPATH. Every run is `pytest -p no:xdist -x`: the tests one after another in one process, as
# slow as the burners make them. Exit status 0 when all N runs passed, 1 at the first failed run.
set -euo pipefail

cd "$(dirname "$0")/.."
N=30
BURNERS=2
GROUP=all
while getopts "n:b:g:h" opt; do
    case $opt in
        n) N=$OPTARG ;;
        b) BURNERS=$OPTARG ;;
        g) GROUP=$OPTARG ;;
        *) sed -n '2,16p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's archsearch, in subprocesses too
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

SIGNAL_TESTS=(
    # SIGINT sent once the run waits at ARCHSEARCH_TEST_WAIT_AT=eval:epoch:1 (the marker file appeared)
    "tests/test_cli.py::test_ctrl_c_leaves_a_valid_checkpoint_and_says_how_to_resume"
    # Ctrl-C at start-up and while a finished run writes its report (ARCHSEARCH_TEST_SIGINT_AT waits for it)
    "tests/test_hostile_inputs.py::test_ctrl_c_during_start_up_is_one_interrupted_line"
    "tests/test_hostile_inputs.py::test_ctrl_c_while_a_finished_run_writes_its_report_says_how_to_write_it"
    # the wait fault point itself: its marker file, its place after the checkpoint, its limit
    "tests/train/test_trainer.py::test_a_wait_fault_point_stops_after_its_checkpoint_and_says_so"
    # the trial loop's fake clock (time budget) and a driver dying with trials in flight
    "tests/search/test_trial_loop.py"
    # an exception at an exact epoch, then resume
    "tests/strategies/darts/test_collapse.py::test_early_stop_returns_the_earlier_architecture_and_a_resumed_run_stops_at_the_same_epoch"
)
KILL_TESTS=(
    # SIGKILL at fault points (ARCHSEARCH_TEST_KILL_AT), then resume equals the uninterrupted run (drop path on)
    "tests/test_resume.py::test_kill_in_search_and_in_eval_then_resume_equals_the_uninterrupted_run[darts]"
    "tests/test_resume.py::test_kill_in_search_and_in_eval_then_resume_equals_the_uninterrupted_run[random]"
    "tests/test_resume.py::test_kill_in_search_and_in_eval_then_resume_equals_the_uninterrupted_run[morphism]"
    "tests/test_resume.py::test_manual_killed_in_search_and_in_eval_equals_the_uninterrupted_run"
    "tests/strategies/random/test_random.py::test_random_in_tabular_mode_draws_no_cell_twice_and_resumes_without_rerunning"
    # rank 1 SIGKILLs itself under torchrun: rank 0's one line, torchrun's report, resume; the elastic restart
    "tests/distributed/test_torchrun_cli.py::test_a_killed_rank_ends_the_job_and_resume_matches_the_uninterrupted_run"
    "tests/distributed/test_torchrun_cli.py::test_torchrun_elastic_restart_resumes_from_the_checkpoint_by_itself"
)
RAY_TESTS=(
    # a SIGINT raised in the driver, a SIGKILLed driver, SIGKILLed and raising workers (skipped without Ray)
    "tests/ray/test_ray_executor.py::test_ctrl_c_cancels_running_trials_and_leaves_a_resumable_index"
    "tests/ray/test_ray_executor.py::test_a_killed_driver_resumes_rerunning_only_unfinished_trials"
    "tests/ray/test_ray_executor.py::test_a_failing_or_dying_trial_is_retried_recorded_and_skipped"
    # a SIGKILLed driver's local Ray: nothing of it outlives the driver, and the resumed run leaves nothing either
    "tests/ray/test_ray_orphans.py"
)

if [[ $# -gt 0 ]]; then
    TESTS=("$@")
else
    case $GROUP in
        signal) TESTS=("${SIGNAL_TESTS[@]}") ;;
        kill) TESTS=("${KILL_TESTS[@]}") ;;
        ray) TESTS=("${RAY_TESTS[@]}") ;;
        all) TESTS=("${SIGNAL_TESTS[@]}" "${KILL_TESTS[@]}" "${RAY_TESTS[@]}") ;;
        *) echo "error: unknown group '$GROUP' (signal, kill, ray, all)" >&2; exit 2 ;;
    esac
fi

BURNER_PIDS=()
stop_burners() {
    for pid in "${BURNER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
}
trap stop_burners EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 "$BURNERS"); do
    "$PYTHON" -c 'while True: pass' &
    BURNER_PIDS+=($!)
done

echo "stress: $N runs of ${#TESTS[@]} test selection(s) beside $BURNERS CPU burner(s) (pids ${BURNER_PIDS[*]:-none})"
passed=0
for i in $(seq 1 "$N"); do
    start=$SECONDS
    if "$PYTHON" -m pytest -p no:xdist -p no:cacheprovider -x -q "${TESTS[@]}"; then
        passed=$i
        echo "stress: run $i/$N passed ($((SECONDS - start)) s)"
    else
        echo "stress: FAILED on run $i/$N after $passed clean run(s) ($((SECONDS - start)) s)"
        exit 1
    fi
done
echo "stress: all $N runs passed"
