//! Runs `examples/counter.rs` as it is (CI builds every example, but only
//! a run shows that it still does what its doc says): the example itself
//! asserts that the count comes out exact after the leader's death, so a
//! broken example, client or session layer fails here.

#[path = "../examples/counter.rs"]
mod counter;

#[test]
fn the_counter_example_counts_exactly_once_across_a_leader_kill() {
    counter::main().expect("the counter example runs to its end");
}
