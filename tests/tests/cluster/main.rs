//! Multi-process integration tests: real `raftmq` processes, kill -9, partitions through
//! a userspace fault proxy, and generous polling timeouts.
//!
//! Scenario files follow openraft's numbering: `t10_` basic, `t20_` delivery, `t30_` the
//! binary, `t40_` RocketMQ clients, `t50_` failures.

// Test helpers may unwrap: a poisoned lock or a missing node is a test bug.
#![allow(clippy::unwrap_used)]

mod harness;
mod proxy;
mod rmq;
mod t10_basic;
mod t20_consumers;
mod t20_delivery;
mod t25_sql_filter;
mod t26_trace;
mod t27_transactions;
mod t30_cli;
mod t30_examples;
mod t40_remoting;
mod t42_remoting_transactions;
mod t50_failover;
mod t50_membership;
mod t50_operator;
mod t50_remoting;
mod t52_drain_grow;
mod t60_hostile;
mod t65_auth;
mod t66_tls;
mod t67_disk_full;
mod t70_metrics;
mod t80_console;
mod t81_browser;
mod t82_console_messages;
