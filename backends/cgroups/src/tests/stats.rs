//! Statistics from fake files, in each version's formats.

use std::collections::BTreeMap;

use super::fake::{add_files, FakeV1, FakeV2};
use crate::stats::{parse_blkio, parse_io_stat, parse_keyed};
use crate::{Cgroup, CpuStats, Error, HugetlbStats, IoDeviceStats, MemoryStats, PidsStats, Stats};

const V1_MEMORY_STAT: &str = "\
cache 2048000
rss 1024000
rss_huge 0
shmem 0
mapped_file 409600
dirty 0
writeback 0
swap 0
pgpgin 1200
pgpgout 100
pgfault 3000
pgmajfault 7
inactive_anon 0
active_anon 1024000
inactive_file 1048576
active_file 999424
unevictable 0
hierarchical_memory_limit 9223372036854771712
total_cache 2048000
total_rss 1024000
";

fn io(major: u64, minor: u64, rb: u64, wb: u64, rio: u64, wio: u64) -> IoDeviceStats {
    IoDeviceStats {
        major,
        minor,
        read_bytes: rb,
        write_bytes: wb,
        read_ios: rio,
        write_ios: wio,
    }
}

#[test]
fn v1_stats_from_every_file() {
    let t = FakeV1::all(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    let cpu = t.mount("cpuacct").join("c");
    add_files(
        &cpu,
        &[
            ("cpuacct.usage", "123456789\n"),
            ("cpuacct.usage_user", "100000000\n"),
            ("cpuacct.usage_sys", "20000000\n"),
            ("cpuacct.usage_percpu", "100 200 300 \n"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\nnr_bursts 0\nburst_time 0\n",
            ),
        ],
    );
    add_files(
        &t.mount("memory").join("c"),
        &[
            ("memory.usage_in_bytes", "4096000\n"),
            ("memory.max_usage_in_bytes", "8192000\n"),
            ("memory.failcnt", "3\n"),
            ("memory.limit_in_bytes", "67108864\n"),
            ("memory.memsw.usage_in_bytes", "5000000\n"),
            ("memory.memsw.limit_in_bytes", "134217728\n"),
            ("memory.stat", V1_MEMORY_STAT),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
        ],
    );
    add_files(
        &t.mount("pids").join("c"),
        &[("pids.current", "4\n"), ("pids.max", "max\n")],
    );
    add_files(
        &t.mount("blkio").join("c"),
        &[
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:16 Read 1\n8:16 Write 2\n8:16 Sync 3\n8:16 Async 0\n8:16 Discard 0\n8:16 Total 3\n\
                 8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n\
                 8:0 Total 12288\nTotal 12291\n",
            ),
            (
                "blkio.throttle.io_serviced_recursive",
                "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
            ),
            // The non-recursive file is ignored when the recursive exists.
            ("blkio.throttle.io_service_bytes", "8:0 Read 999\n"),
        ],
    );
    add_files(
        &t.mount("hugetlb").join("c"),
        &[
            ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
            ("hugetlb.2MB.max_usage_in_bytes", "6291456\n"),
            ("hugetlb.2MB.failcnt", "1\n"),
        ],
    );

    let stats = cg.stats().unwrap();
    let stat: BTreeMap<String, u64> = parse_keyed(V1_MEMORY_STAT).unwrap();
    assert_eq!(stat.len(), 20);
    assert_eq!(
        stats,
        Stats {
            cpu: CpuStats {
                usage_total_ns: 123_456_789,
                usage_user_ns: 100_000_000,
                usage_kernel_ns: 20_000_000,
                per_cpu_ns: vec![100, 200, 300],
                nr_periods: 10,
                nr_throttled: 2,
                throttled_time_ns: 5000,
            },
            memory: MemoryStats {
                usage: 4_096_000,
                limit: 64 << 20,
                max_usage: 8_192_000,
                failcnt: 3,
                swap_usage: 904_000,
                swap_limit: 64 << 20,
                cache: 2_048_000,
                rss: 1_024_000,
                mapped_file: 409_600,
                pgfault: 3000,
                pgmajfault: 7,
                inactive_file: 1_048_576,
                active_file: 999_424,
                oom_kill: 2,
                stat,
            },
            pids: PidsStats {
                current: 4,
                limit: 0,
            },
            io: vec![io(8, 0, 4096, 8192, 1, 2), io(8, 16, 1, 2, 0, 0)],
            hugetlb: vec![
                // The fake kernel lists a 1GB limit file but no usage files.
                HugetlbStats {
                    page_size: "1GB".to_owned(),
                    ..HugetlbStats::default()
                },
                HugetlbStats {
                    page_size: "2MB".to_owned(),
                    usage: 4_194_304,
                    max_usage: 6_291_456,
                    failcnt: 1,
                },
            ],
        }
    );

    // Older kernels: user/system from cpuacct.stat in clock ticks;
    // unlimited memory+swap; no memsw at all.
    std::fs::remove_file(cpu.join("cpuacct.usage_user")).unwrap();
    add_files(&cpu, &[("cpuacct.stat", "user 5\nsystem 3\n")]);
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap()
        .unsigned_abs();
    let mem = t.mount("memory").join("c");
    add_files(
        &mem,
        &[("memory.memsw.limit_in_bytes", "9223372036854771712\n")],
    );
    let stats = cg.stats().unwrap();
    assert_eq!(stats.cpu.usage_user_ns, 5 * (1_000_000_000 / ticks));
    assert_eq!(stats.cpu.usage_kernel_ns, 3 * (1_000_000_000 / ticks));
    assert_eq!(stats.memory.swap_limit, u64::MAX);
    std::fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
    std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
    let stats = cg.stats().unwrap();
    assert_eq!(
        (
            stats.memory.swap_usage,
            stats.memory.swap_limit,
            stats.memory.limit
        ),
        (0, 0, u64::MAX)
    );

    // Garbage is an error naming the file.
    std::fs::write(cpu.join("cpuacct.usage_percpu"), "1 x 3\n").unwrap();
    let err = cg.stats().unwrap_err();
    assert!(
        matches!(&err, Error::Parse { path, .. } if path.ends_with("cpuacct.usage_percpu")),
        "{err}"
    );
}

#[test]
fn v1_stats_without_controllers_or_files_are_zero() {
    let t = FakeV1::new(false);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    let stats = cg.stats().unwrap();
    assert_eq!(stats.cpu, CpuStats::default());
    assert_eq!(stats.memory.usage, 0);
    assert_eq!(stats.memory.limit, u64::MAX);
    assert!(stats.io.is_empty() && stats.hugetlb.is_empty());
}

const V2_MEMORY_STAT: &str = "\
anon 1000000
file 2000000
kernel 300000
kernel_stack 16384
pagetables 40960
sock 0
shmem 0
file_mapped 300000
file_dirty 0
file_writeback 0
swapcached 0
inactive_anon 0
active_anon 1000000
inactive_file 1500000
active_file 500000
unevictable 0
pgfault 4000
pgmajfault 3
";

#[test]
fn v2_stats_from_every_file() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    add_files(
        &t.root.path().join("c"),
        &[
            (
                "cpu.stat",
                "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnice_usec 0\n\
                 nr_periods 4\nnr_throttled 1\nthrottled_usec 20\nnr_bursts 0\nburst_usec 0\n",
            ),
            ("memory.current", "3300000\n"),
            ("memory.max", "1073741824\n"),
            ("memory.peak", "4000000\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n",
            ),
            ("memory.swap.current", "4096\n"),
            ("memory.swap.max", "max\n"),
            ("memory.stat", V2_MEMORY_STAT),
            ("pids.current", "3\n"),
            ("pids.max", "100\n"),
            (
                "io.stat",
                "8:16 rbytes=1 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n\
                 8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
            ),
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.2MB.rsvd.max", "max\n"),
            ("hugetlb.2MB.current", "2097152\n"),
            ("hugetlb.2MB.rsvd.current", "2097152\n"),
            ("hugetlb.2MB.events", "max 4\n"),
        ],
    );
    let stats = cg.stats().unwrap();
    assert_eq!(
        stats,
        Stats {
            cpu: CpuStats {
                usage_total_ns: 1_500_000,
                usage_user_ns: 1_000_000,
                usage_kernel_ns: 500_000,
                per_cpu_ns: Vec::new(),
                nr_periods: 4,
                nr_throttled: 1,
                throttled_time_ns: 20_000,
            },
            memory: MemoryStats {
                usage: 3_300_000,
                limit: 1 << 30,
                max_usage: 4_000_000,
                failcnt: 7,
                swap_usage: 4096,
                swap_limit: u64::MAX,
                cache: 2_000_000,
                rss: 1_000_000,
                mapped_file: 300_000,
                pgfault: 4000,
                pgmajfault: 3,
                inactive_file: 1_500_000,
                active_file: 500_000,
                oom_kill: 1,
                stat: parse_keyed(V2_MEMORY_STAT).unwrap(),
            },
            pids: PidsStats {
                current: 3,
                limit: 100,
            },
            io: vec![io(8, 0, 4096, 8192, 1, 2), io(8, 16, 1, 0, 1, 0)],
            hugetlb: vec![HugetlbStats {
                page_size: "2MB".to_owned(),
                usage: 2_097_152,
                max_usage: 0,
                failcnt: 4,
            }],
        }
    );

    std::fs::write(t.root.path().join("c/memory.events"), "max seven\n").unwrap();
    let err = cg.stats().unwrap_err();
    assert!(
        matches!(&err, Error::Parse { path, .. } if path.ends_with("memory.events")),
        "{err}"
    );
}

#[test]
fn parsers() {
    assert_eq!(
        parse_keyed("a 1\n\nb 2\n").unwrap(),
        BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)])
    );
    for bad in ["a\n", "a x\n", "a 1 2\n", "a -1\n"] {
        assert_eq!(parse_keyed(bad), None, "{bad:?}");
    }
    let blkio =
        parse_blkio("8:0 Read 5\n8:0 Write 6\n8:0 Total 11\n253:1 Read 1\nTotal 12\n").unwrap();
    assert_eq!(
        blkio,
        BTreeMap::from([((8, 0), (5, 6)), ((253, 1), (1, 0))])
    );
    assert_eq!(parse_blkio(""), Some(BTreeMap::new()));
    for bad in [
        "8:0 Read\n",
        "8-0 Read 5\n",
        "8:0 Read x\n",
        "8:0 Read 5 6\n",
    ] {
        assert_eq!(parse_blkio(bad), None, "{bad:?}");
    }
    assert_eq!(
        parse_io_stat("259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0 cost.usage=5\n")
            .unwrap(),
        [io(259, 0, 10, 20, 1, 2)]
    );
    for bad in ["8:0 rbytes\n", "x rbytes=1\n", "8:0 rbytes=-1\n"] {
        assert_eq!(parse_io_stat(bad), None, "{bad:?}");
    }
}
