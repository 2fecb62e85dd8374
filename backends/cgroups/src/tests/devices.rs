//! Device rules: validation, v1 lines, and the v2 eBPF program, checked
//! instruction by instruction and by running it in a small interpreter
//! against an independent statement of the rules' meaning.

use super::spec::rule;
use crate::bpf::{Insn, ACC_MKNOD, ACC_READ, ACC_WRITE, DEV_BLOCK, DEV_CHAR};
use crate::devices::{program, v1_lines, Kind, Rule};

fn parse(r: oci_spec::runtime::LinuxDeviceCgroup) -> Rule {
    Rule::from_oci(&r).unwrap()
}

#[test]
fn rules_are_validated_and_normalized() {
    let r = parse(rule(true, 'c', Some(1), Some(3), "mwr"));
    assert_eq!(
        r,
        Rule {
            allow: true,
            kind: Kind::Char,
            major: Some(1),
            minor: Some(3),
            access: ACC_READ | ACC_WRITE | ACC_MKNOD,
        }
    );
    assert_eq!(r.v1_line(), "c 1:3 rwm");
    // Negative numbers are wildcards, empty access is everything.
    let r = parse(rule(false, 'b', Some(-1), None, ""));
    assert_eq!((r.major, r.minor, r.access), (None, None, 7));
    assert_eq!(r.v1_line(), "b *:* rwm");
    assert_eq!(
        parse(rule(true, 'b', Some(8), None, "w")).v1_line(),
        "b 8:* w"
    );
    // An `a` rule is all devices, whatever else it says.
    assert_eq!(
        parse(rule(true, 'a', Some(5), Some(1), "r")).v1_line(),
        "a *:* rwm"
    );
    // No type at all is `a`.
    let mut untyped = rule(false, 'a', None, None, "rwm");
    untyped.set_typ(None);
    assert_eq!(parse(untyped).kind, Kind::All);

    for (bad, why) in [
        (rule(true, 'u', None, None, "r"), "type \"u\""),
        (rule(true, 'p', None, None, "r"), "type \"p\""),
        (rule(true, 'c', Some(1), Some(3), "rq"), "access 'q'"),
        (rule(true, 'c', Some(1 << 31), Some(3), "r"), "major number"),
        (rule(true, 'c', Some(1), Some(1 << 33), "r"), "minor number"),
    ] {
        let err = Rule::from_oci(&bad).unwrap_err();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn v1_lines_reset_unless_the_list_starts_with_an_a_rule() {
    let rules = [
        parse(rule(true, 'c', Some(1), Some(3), "rw")),
        parse(rule(false, 'c', Some(1), Some(3), "w")),
    ];
    let lines = v1_lines(&rules);
    assert_eq!(
        lines,
        [
            ("devices.deny", "a *:* rwm".to_owned()),
            ("devices.allow", "c 1:3 rw".to_owned()),
            ("devices.deny", "c 1:3 w".to_owned()),
        ]
    );
    let rules = [
        parse(rule(true, 'a', None, None, "rwm")),
        parse(rule(false, 'b', Some(8), Some(0), "m")),
    ];
    assert_eq!(
        v1_lines(&rules),
        [
            ("devices.allow", "a *:* rwm".to_owned()),
            ("devices.deny", "b 8:0 m".to_owned()),
        ]
    );
    assert!(v1_lines(&[]).is_empty());
}

/// The fixed prologue: type in r2, access in r3, major r4, minor r5.
fn prologue() -> Vec<Insn> {
    vec![
        Insn::ldx_w(2, 1, 0),
        Insn::mov32_reg(3, 2),
        Insn::rsh32_imm(3, 16),
        Insn::and32_imm(2, 0xffff),
        Insn::ldx_w(4, 1, 4),
        Insn::ldx_w(5, 1, 8),
    ]
}

#[test]
fn program_for_a_deny_default_list() {
    // deny all; allow c 1:3 rwm; allow b *:* r
    let rules = [
        parse(rule(false, 'a', None, None, "rwm")),
        parse(rule(true, 'c', Some(1), Some(3), "rwm")),
        parse(rule(true, 'b', None, None, "r")),
    ];
    let mut expected = prologue();
    expected.extend([
        // Last rule first: b *:* r (allow) — only the type is checked.
        Insn::jne_imm(2, DEV_BLOCK as i32, 4),
        Insn::and32_imm(3, 0x5),
        Insn::jne_imm(3, 0, 2),
        Insn::mov32_imm(0, 1),
        Insn::exit(),
        // c 1:3 rwm (allow).
        Insn::jne_imm(2, DEV_CHAR as i32, 6),
        Insn::jne_imm(4, 1, 5),
        Insn::jne_imm(5, 3, 4),
        Insn::and32_imm(3, 0),
        Insn::jne_imm(3, 0, 2),
        Insn::mov32_imm(0, 1),
        Insn::exit(),
        // a (deny): returns, and the program ends.
        Insn::mov32_imm(0, 0),
        Insn::exit(),
    ]);
    assert_eq!(program(&rules), expected);
}

#[test]
fn program_without_an_a_rule_denies_what_is_left() {
    // deny c *:5 w; (default deny)
    let rules = [parse(rule(false, 'c', None, Some(5), "w"))];
    let mut expected = prologue();
    expected.extend([
        Insn::jne_imm(2, DEV_CHAR as i32, 6),
        Insn::jne_imm(5, 5, 5),
        Insn::mov32_reg(0, 3),
        Insn::and32_imm(0, ACC_WRITE as i32),
        Insn::jeq_imm(0, 0, 2),
        Insn::mov32_imm(0, 0),
        Insn::exit(),
        Insn::mov32_imm(0, 0),
        Insn::exit(),
    ]);
    assert_eq!(program(&rules), expected);
    // Rules before an `a` rule are never compiled.
    let rules = [
        parse(rule(true, 'c', Some(1), Some(3), "r")),
        parse(rule(true, 'a', None, None, "")),
    ];
    let mut expected = prologue();
    expected.extend([Insn::mov32_imm(0, 1), Insn::exit()]);
    assert_eq!(program(&rules), expected);
}

#[test]
fn instruction_encoding() {
    assert_eq!(
        Insn::ldx_w(2, 1, 4).encode(),
        [0x61, 0x12, 4, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        Insn::jne_imm(4, 259, -2).encode(),
        [0x55, 0x04, 0xfe, 0xff, 3, 1, 0, 0]
    );
    assert_eq!(
        Insn::mov32_reg(0, 3).encode(),
        [0xbc, 0x30, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(Insn::and32_imm(2, 0xffff).encode()[..2], [0x54, 0x02]);
    assert_eq!(Insn::rsh32_imm(3, 16).encode()[..2], [0x74, 0x03]);
    assert_eq!(Insn::mov32_imm(0, 1).encode()[..2], [0xb4, 0x00]);
    assert_eq!(Insn::jeq_imm(0, 0, 2).encode()[..4], [0x15, 0x00, 2, 0]);
    assert_eq!(Insn::exit().encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
}

/// Runs a device program on one request, as the kernel would: r1 points
/// at `{access_type, major, minor}`. Checks on the way what the verifier
/// insists on (known opcodes, context reads only, forward jumps in range).
fn interpret(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u32 {
    let ctx = [(access << 16) | kind, major, minor];
    let mut r = [0u64; 11];
    r[1] = u64::MAX; // the context pointer: only loads through it
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        let (d, s) = (usize::from(i.dst), usize::from(i.src));
        let imm32 = i.imm as u32;
        let jump = |pc: usize| {
            assert!(i.off > 0, "backward or null jump at {}", pc - 1);
            let target = pc + usize::try_from(i.off).unwrap();
            assert!(target < prog.len(), "jump out of the program at {}", pc - 1);
            target
        };
        match i.code {
            0x61 => {
                assert!(s == 1 && r[1] == u64::MAX, "load not from the context");
                let off = usize::try_from(i.off).unwrap();
                assert!(off % 4 == 0 && off < 12, "bad context offset {off}");
                r[d] = u64::from(ctx[off / 4]);
            }
            0xb4 => r[d] = u64::from(imm32),
            0xbc => r[d] = r[s] & 0xffff_ffff,
            0x54 => r[d] = (r[d] & u64::from(imm32)) & 0xffff_ffff,
            0x74 => r[d] = ((r[d] as u32) >> imm32) as u64,
            0x55 => {
                if r[d] != i64::from(i.imm) as u64 {
                    pc = jump(pc);
                }
            }
            0x15 => {
                if r[d] == i64::from(i.imm) as u64 {
                    pc = jump(pc);
                }
            }
            0x95 => return u32::try_from(r[0]).unwrap(),
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

/// The meaning of a rule list, stated directly: each kind of access asked
/// for is decided by the last rule matching the device and naming it
/// (an `a` rule matches everything); undecided is denied; all must be
/// allowed.
fn reference(rules: &[Rule], kind: u32, access: u32, major: u32, minor: u32) -> bool {
    [ACC_MKNOD, ACC_READ, ACC_WRITE]
        .into_iter()
        .filter(|bit| access & bit != 0)
        .all(|bit| {
            rules
                .iter()
                .rev()
                .find(|r| match r.kind {
                    Kind::All => true,
                    k => {
                        (k == Kind::Block) == (kind == DEV_BLOCK)
                            && r.major.is_none_or(|m| m == major)
                            && r.minor.is_none_or(|m| m == minor)
                            && r.access & bit != 0
                    }
                })
                .is_some_and(|r| r.allow)
        })
}

/// Every instruction can be reached (the verifier rejects dead code) and
/// the program ends in `exit`.
fn assert_verifiable(prog: &[Insn]) {
    let mut reached = vec![false; prog.len()];
    reached[0] = true;
    for pc in 0..prog.len() {
        if !reached[pc] {
            panic!("instruction {pc} ({}) is unreachable", prog[pc]);
        }
        let i = prog[pc];
        if i.code == 0x95 {
            continue;
        }
        if pc + 1 < prog.len() {
            reached[pc + 1] = true;
        }
        if i.code == 0x55 || i.code == 0x15 {
            reached[pc + 1 + usize::try_from(i.off).unwrap()] = true;
        }
    }
    assert_eq!(prog.last().unwrap().code, 0x95);
}

#[test]
fn named_cases_mean_what_they_say() {
    let null_read = |rules: &[Rule]| interpret(&program(rules), DEV_CHAR, ACC_READ, 1, 3);
    let null_rw = |rules: &[Rule]| interpret(&program(rules), DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3);
    let zero_read = |rules: &[Rule]| interpret(&program(rules), DEV_CHAR, ACC_READ, 1, 5);

    // Allow all, then deny reading /dev/null.
    let rules = [
        parse(rule(true, 'a', None, None, "rwm")),
        parse(rule(false, 'c', Some(1), Some(3), "r")),
    ];
    assert_eq!(null_read(&rules), 0);
    assert_eq!(null_rw(&rules), 0, "a partly denied access is denied");
    assert_eq!(interpret(&program(&rules), DEV_CHAR, ACC_WRITE, 1, 3), 1);
    assert_eq!(zero_read(&rules), 1);

    // The last rule wins: deny then allow the same access.
    let rules = [
        parse(rule(false, 'a', None, None, "rwm")),
        parse(rule(false, 'c', Some(1), Some(3), "rwm")),
        parse(rule(true, 'c', Some(1), Some(3), "r")),
    ];
    assert_eq!(null_read(&rules), 1);
    assert_eq!(null_rw(&rules), 0);
    // ...and allow then deny.
    let rules = [
        parse(rule(true, 'c', Some(1), None, "rw")),
        parse(rule(false, 'c', Some(1), Some(3), "w")),
    ];
    assert_eq!(null_read(&rules), 1);
    assert_eq!(null_rw(&rules), 0);
    assert_eq!(interpret(&program(&rules), DEV_CHAR, ACC_WRITE, 1, 5), 1);
    assert_eq!(interpret(&program(&rules), DEV_BLOCK, ACC_READ, 1, 3), 0);
    // Two allows together grant an access neither grants alone.
    let rules = [
        parse(rule(true, 'c', Some(1), None, "r")),
        parse(rule(true, 'c', None, Some(3), "w")),
    ];
    assert_eq!(null_rw(&rules), 1);
    assert_eq!(
        interpret(&program(&rules), DEV_CHAR, ACC_READ | ACC_WRITE, 1, 5),
        0
    );
    // A later `a` rule overrides everything before it.
    let rules = [
        parse(rule(false, 'c', Some(1), Some(3), "rwm")),
        parse(rule(true, 'a', None, None, "r")),
    ];
    assert_eq!(null_rw(&rules), 1);
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::try_from(self.next() % from.len() as u64).unwrap()]
    }
}

#[test]
fn programs_agree_with_the_stated_meaning() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let majors = [None, Some(1), Some(8)];
    let minors = [None, Some(3), Some(5)];
    for _ in 0..500 {
        let len = rng.next() % 7;
        let rules: Vec<Rule> = (0..len)
            .map(|_| Rule {
                allow: rng.next().is_multiple_of(2),
                kind: rng.pick(&[Kind::All, Kind::Block, Kind::Char, Kind::Char, Kind::Block]),
                major: rng.pick(&majors),
                minor: rng.pick(&minors),
                access: u32::try_from(rng.next() % 7 + 1).unwrap(),
            })
            .collect();
        let prog = program(&rules);
        assert_verifiable(&prog);
        for kind in [DEV_BLOCK, DEV_CHAR] {
            for major in [1, 8, 9] {
                for minor in [3, 5, 7] {
                    for access in 1..=7 {
                        let want = reference(&rules, kind, access, major, minor);
                        let got = interpret(&prog, kind, access, major, minor);
                        assert_eq!(
                            got,
                            u32::from(want),
                            "rules {rules:?}, type {kind} {major}:{minor} access {access}"
                        );
                    }
                }
            }
        }
    }
}
