//! The kv example's RESP parser (`examples/kv/resp.rs`) and state machine
//! (`examples/kv/store.rs`, whose own unit tests run here: cargo does not
//! run an example's tests): partial and inline input, the limits that keep
//! a client's command within what the Raft log takes, and work linear in
//! the bytes received however they are split into reads.

#[allow(dead_code, reason = "the reply encoders serve the example only")]
#[path = "../examples/kv/resp.rs"]
mod resp;
#[allow(dead_code, reason = "the example uses what the tests do not")]
#[path = "../examples/kv/store.rs"]
mod store;

use bytes::BytesMut;
use resp::{ARGS_MAX, COMMAND_BYTES_MAX, Command, CommandParser, Limits, ProtocolError};

/// `args` as a RESP array of bulk strings.
fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses `input` at once with the server's limits: the commands, then
/// the error if one ended the input.
fn parse_all(input: &[u8]) -> (Vec<Command>, Option<ProtocolError>) {
    let mut parser = CommandParser::new(Limits::SERVER);
    let mut buf = BytesMut::from(input);
    let mut commands = Vec::new();
    loop {
        match parser.parse_command(&mut buf) {
            Ok(Some(command)) => commands.push(command),
            Ok(None) => return (commands, None),
            Err(e) => return (commands, Some(e)),
        }
    }
}

fn parse_error(input: &[u8]) -> ProtocolError {
    parse_all(input).1.expect("refused")
}

#[test]
fn parses_arrays_partial_input_and_inline_commands() {
    let mut parser = CommandParser::new(Limits::SERVER);
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI"[..]);
    assert_eq!(
        parser.parse_command(&mut buf).unwrap(),
        Some(vec![b"GET".to_vec(), b"k".to_vec()])
    );
    assert_eq!(parser.parse_command(&mut buf).unwrap(), None, "incomplete");
    buf.extend_from_slice(b"NG\r\nset a  b\r\n\r\nget a\n");
    assert_eq!(
        parser.parse_command(&mut buf).unwrap(),
        Some(vec![b"PING".to_vec()])
    );
    let inline: [&[u8]; 3] = [b"set", b"a", b"b"];
    assert_eq!(
        parser.parse_command(&mut buf).unwrap(),
        Some(inline.map(<[u8]>::to_vec).to_vec())
    );
    assert_eq!(
        parser.parse_command(&mut buf).unwrap(),
        Some(vec![]),
        "a blank line"
    );
    assert_eq!(
        parser.parse_command(&mut buf).unwrap(),
        Some(vec![b"get".to_vec(), b"a".to_vec()]),
        "a bare line feed ends an inline command too"
    );
    assert!(buf.is_empty());
}

#[test]
fn refuses_huge_negative_overflowing_and_malformed_lengths() {
    for input in [
        &b"*1\r\n$2147483648\r\n"[..],
        b"*1\r\n$99999999999\r\n",
        b"*1\r\n$99999999999999999999999999\r\n",
        b"*99999999999999999999999999\r\n",
        b"*2147483648\r\n",
        b"*-1\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$+1\r\nx\r\n",
        b"*1\r\n$\r\n",
        b"*x\r\n",
        b"*1\r\n:1\r\n",
        b"*1\r\n$1\r\nab\r\n",
        b"*1\n",
        b"*1\r\n$00000000000000000000000000000000001\r\nx\r\n",
    ] {
        assert!(
            parse_all(input).1.is_some(),
            "{:?} accepted",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn caps_the_whole_command_not_only_each_bulk_string() {
    // The largest SET that fits: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$<len>\r\n<value>\r\n".
    let framing = 4 + 9 + 7 + 3 + COMMAND_BYTES_MAX.to_string().len() + 2;
    let value = vec![b'v'; COMMAND_BYTES_MAX - framing];
    let fits = encode_command(&[b"SET", b"k", &value]);
    assert_eq!(fits.len(), COMMAND_BYTES_MAX);
    let (commands, error) = parse_all(&fits);
    assert_eq!((commands.len(), error), (1, None));
    let one_too_many = encode_command(&[b"SET", b"k", &[value.as_slice(), b"v"].concat()]);
    assert_eq!(
        parse_error(&one_too_many),
        ProtocolError("command too long")
    );

    // Three strings of 1.5 MiB each: every one under the cap, not their sum.
    let third = vec![b'x'; 3 << 19];
    let split = encode_command(&[b"MSET", &third, &third, &third]);
    assert_eq!(parse_error(&split), ProtocolError("command too long"));

    // The old attack: a 64 MiB value is refused at its length line, before
    // the value arrives.
    let header = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 64 << 20);
    assert_eq!(
        parse_error(header.as_bytes()),
        ProtocolError("command too long")
    );
}

#[test]
fn caps_the_argument_count_at_65536() {
    let mut parser = CommandParser::new(Limits::SERVER);
    let mut at_cap = BytesMut::from(&b"*65536\r\n"[..]);
    assert_eq!(
        parser.parse_command(&mut at_cap),
        Ok(None),
        "waits for the elements"
    );
    assert_eq!(
        parse_error(b"*65537\r\n"),
        ProtocolError("too many arguments")
    );
}

/// Feeds `input` in `chunk`-byte reads, parsing all it can after each as
/// the server does; returns the commands and the parser's work.
fn parse_in_chunks(limits: Limits, input: &[u8], chunk: usize) -> (Vec<Command>, u64) {
    let mut parser = CommandParser::new(limits);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(command) = parser.parse_command(&mut buf).expect("valid input") {
            commands.push(command);
        }
    }
    assert!(buf.is_empty(), "all consumed");
    (commands, parser.bytes_examined())
}

#[test]
fn a_million_element_array_in_1_kib_reads_costs_linear_work() {
    // Over the server's limits on purpose: the parser's work must not
    // depend on them (re-parsing from the start would examine ~25 GB).
    let limits = Limits {
        command_bytes_max: usize::MAX,
        args_max: 1 << 20,
    };
    let element = b"$1\r\nx\r\n";
    let mut input = format!("*{}\r\n", 1 << 20).into_bytes();
    for _ in 0..1 << 20 {
        input.extend_from_slice(element);
    }
    let (commands, examined) = parse_in_chunks(limits, &input, 1024);
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].len(), 1 << 20);
    assert!(
        examined <= input.len() as u64,
        "examined {examined} bytes of {} received",
        input.len()
    );
}

#[test]
fn commands_arriving_a_byte_at_a_time_cost_linear_work() {
    // A long inline line, then the largest argument count with long length
    // lines: every line end is searched for once.
    let mut input = vec![b'a'; 60 << 10];
    input.extend_from_slice(b"\r\n");
    let element = b"$00000000000000000000000000001\r\nx\r\n";
    input.extend_from_slice(format!("*{ARGS_MAX}\r\n").as_bytes());
    for _ in 0..ARGS_MAX {
        input.extend_from_slice(element);
    }
    assert!(input.len() < COMMAND_BYTES_MAX * 2);
    let (commands, examined) = parse_in_chunks(Limits::SERVER, &input, 1);
    assert_eq!(commands.len(), 2);
    assert_eq!(commands[1].len(), ARGS_MAX);
    assert!(
        examined <= input.len() as u64,
        "examined {examined} bytes of {} received",
        input.len()
    );
}
