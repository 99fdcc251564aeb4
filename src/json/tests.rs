#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::json;

fn parse_err(text: &str) -> Error {
    match from_str(text) {
        Err(e) => e,
        Ok(v) => panic!("{text:?} parsed as {v}"),
    }
}

#[test]
fn scalars_arrays_and_objects_parse() {
    assert_eq!(from_str(" null ").unwrap(), Value::Null);
    assert_eq!(from_str("true").unwrap(), Value::Bool(true));
    assert_eq!(from_str("false").unwrap(), Value::Bool(false));
    assert_eq!(from_str("\"x\"").unwrap(), "x");
    assert_eq!(from_str("[]").unwrap(), json!([]));
    assert_eq!(from_str("{}").unwrap(), json!({}));
    assert_eq!(
        from_str("{\"a\": [1, {\"b\": null}], \"c\": \"d\"}").unwrap(),
        json!({"a": [1, {"b": null}], "c": "d"})
    );
    assert_eq!(from_slice(b"\t\r\n[1]\n").unwrap(), json!([1]));
}

#[test]
fn objects_write_keys_sorted_and_a_repeated_key_keeps_its_last_value() {
    let v = from_str(r#"{"b": 1, "a": 2, "c": {"z": 0, "y": 0}, "b": 3}"#).unwrap();
    assert_eq!(v.to_string(), r#"{"a":2,"b":3,"c":{"y":0,"z":0}}"#);
}

#[test]
fn strings_escape_as_serde_json_did() {
    let v = json!({"s": "a\"\\/\u{1}\u{7f}é\n\t\r\u{8}\u{c}\u{1f}\u{2028}"});
    assert_eq!(
        v.to_string(),
        "{\"s\":\"a\\\"\\\\/\\u0001\u{7f}é\\n\\t\\r\\b\\f\\u001f\u{2028}\"}"
    );
    assert_eq!(from_str(&v.to_string()).unwrap(), v);
}

#[test]
fn escapes_unicode_and_surrogate_pairs_decode() {
    assert_eq!(
        from_str(r#""\" \\ \/ \b \f \n \r \t""#).unwrap(),
        "\" \\ / \u{8} \u{c} \n \r \t"
    );
    assert_eq!(from_str(r#""\u00e9\u4e2D""#).unwrap(), "é中");
    assert_eq!(from_str(r#""\ud83d\ude00""#).unwrap(), "😀");
    assert_eq!(from_str("\"😀 é\"").unwrap(), "😀 é");
    assert_eq!(
        parse_err(r#""\ud83d""#).message(),
        "lone leading surrogate in hex escape"
    );
    assert_eq!(
        parse_err(r#""\ud83d\u0041""#).message(),
        "invalid surrogate pair in hex escape"
    );
    assert_eq!(
        parse_err(r#""\ude00""#).message(),
        "lone trailing surrogate in hex escape"
    );
    assert_eq!(parse_err(r#""\u12g4""#).message(), "invalid hex escape");
    assert_eq!(parse_err(r#""\x""#).message(), "invalid escape");
    assert_eq!(
        parse_err("\"a\u{1}\"").message(),
        "control character (\\u0000-\\u001F) found while parsing a string"
    );
    assert_eq!(
        from_slice(b"\"\xff\"").unwrap_err().message(),
        "invalid UTF-8"
    );
}

#[test]
fn numbers_keep_their_text_and_read_as_serde_json_read_them() {
    for text in [
        "0",
        "-0",
        "12",
        "-12",
        "1.50",
        "1E3",
        "1e-7",
        "-2.5e+10",
        "18446744073709551616",
    ] {
        let v = from_str(text).unwrap();
        assert_eq!(v.to_string(), text, "written back as read");
    }
    assert_eq!(from_str("12").unwrap().as_u64(), Some(12));
    assert_eq!(from_str("-12").unwrap().as_u64(), None);
    assert_eq!(from_str("-12").unwrap().as_i64(), Some(-12));
    assert_eq!(from_str("2.0").unwrap().as_u64(), None);
    assert_eq!(from_str("1E3").unwrap().as_u64(), None);
    assert_eq!(from_str("1E3").unwrap().as_f64(), Some(1000.0));
    assert_eq!(from_str("-0").unwrap().as_i64(), None);
    assert_eq!(
        from_str("18446744073709551615").unwrap().as_u64(),
        Some(u64::MAX)
    );
    assert_eq!(from_str("18446744073709551616").unwrap().as_u64(), None);
    assert_eq!(from_str("1.50").unwrap(), json!(1.5), "compared by value");
    assert_ne!(
        from_str("1").unwrap(),
        json!(1.0),
        "an integer is not a float"
    );
    assert_eq!(json!(1e30).to_string(), "1e+30");
    assert_eq!(json!(250.0).to_string(), "250.0");
    assert_eq!(json!(f64::NAN), Value::Null);
    for bad in ["01", "1.", ".5", "-", "1e", "1e+", "+1", "0x10"] {
        assert!(from_str(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_err("1e400").message(), "number out of range");
    assert_eq!(parse_err(&"9".repeat(400)).message(), "number out of range");
}

#[test]
fn errors_say_what_and_where() {
    let e = parse_err("{\n  \"a\": 1,\n  \"b\" 2\n}");
    assert_eq!(e.message(), "expected `:`");
    assert_eq!((e.line(), e.column(), e.offset()), (3, 7, 18));
    assert_eq!(e.to_string(), "expected `:` at line 3 column 7 (byte 18)");
    assert_eq!(parse_err("{not json").message(), "key must be a string");
    assert_eq!(parse_err("").message(), "EOF while parsing a value");
    assert_eq!(parse_err("[1,").message(), "EOF while parsing a value");
    assert_eq!(parse_err("[1").message(), "EOF while parsing a list");
    assert_eq!(
        parse_err("{\"a\":1").message(),
        "EOF while parsing an object"
    );
    assert_eq!(parse_err("\"abc").message(), "EOF while parsing a string");
    assert_eq!(parse_err("[1] x").message(), "trailing characters");
    assert_eq!(parse_err("[1 2]").message(), "expected `,` or `]`");
    assert_eq!(
        parse_err("{\"a\":1 \"b\":2}").message(),
        "expected `,` or `}`"
    );
    assert_eq!(parse_err("[tru]").message(), "expected value");
    assert_eq!(parse_err("[1,]").message(), "expected value");
    assert_eq!(parse_err("é").column(), 1, "columns count characters");
}

#[test]
fn nesting_is_limited_instead_of_overflowing_the_stack() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(from_str(&nested(MAX_DEPTH)).is_ok());
    let e = parse_err(&nested(MAX_DEPTH + 1));
    assert_eq!(e.message(), "nesting too deep (more than 128 levels)");
    assert_eq!(e.offset(), MAX_DEPTH);
    // Far deeper input fails the same way, without recursing further.
    let objects = "{\"a\":".repeat(100_000);
    assert_eq!(
        parse_err(&objects).message(),
        "nesting too deep (more than 128 levels)"
    );
}

#[test]
fn access_indexing_and_pointers() {
    let mut v = json!({"a": [10, {"b~/c": "x"}], "n": null});
    assert_eq!(v["a"][0], 10);
    assert_eq!(v["missing"]["deeper"][3], Value::Null);
    assert_eq!(v.pointer("/a/1/b~0~1c"), Some(&json!("x")));
    assert_eq!(v.pointer(""), Some(&v.clone()));
    assert_eq!(v.pointer("/a/01"), None);
    assert_eq!(v.pointer("a"), None);
    assert_eq!(
        v.get("a").and_then(|a| a.get(1)).map(Value::is_object),
        Some(true)
    );
    v["n"] = json!(1);
    v["new"] = json!("y");
    assert_eq!(v.to_string(), r#"{"a":[10,{"b~/c":"x"}],"n":1,"new":"y"}"#);
    let mut scalar = json!(3);
    scalar["k"] = json!(true);
    assert_eq!(scalar, json!({"k": true}), "never panics on a non-object");
}

#[test]
fn json_macro_borrows_interpolated_values() {
    let name = String::from("svc");
    let list = vec![json!(1), json!("two")];
    let key = "k";
    let v = json!({key: name, "list": list, "opt": None::<u32>, "neg": -3, "arr": [true, null]});
    assert_eq!(
        v.to_string(),
        r#"{"arr":[true,null],"k":"svc","list":[1,"two"],"neg":-3,"opt":null}"#
    );
    assert_eq!(name, "svc");
    assert_eq!(list.len(), 2);
}

#[test]
fn the_word_at_a_time_scan_finds_the_first_special_byte() {
    for len in 0..40 {
        for at in 0..len {
            for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                let mut bytes = vec![b'a'; len];
                // Bytes that must not stop the scan: DEL, high bytes, space, the neighbours of
                // '"' and '\'.
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = [b'a', 0x7f, 0x80, 0xff, b' ', b'!', b'#', b'[', b']', 0x20][i % 10];
                }
                bytes[at] = special;
                assert_eq!(
                    super::plain_run(&bytes),
                    at,
                    "len {len} at {at} byte {special}"
                );
            }
        }
        assert_eq!(super::plain_run(&vec![0xe9; len]), len);
    }
}

const KEEP: Keep<'static> = Keep {
    depth: 3,
    key: "v",
    unless_members: &[&["id"], &["data", "specversion"]],
};

/// `{"a": [{"v": <payload>}]}` read with and without keeping: text that reads as the same
/// tree written, the same error.
fn kept(payload: &str) -> Option<Value> {
    let body = format!(r#"{{"a": [{{"v": {payload}}}]}}"#);
    let keeping = from_slice_keeping(body.as_bytes(), KEEP);
    let parsing = from_slice(body.as_bytes());
    match (&keeping, &parsing) {
        (Ok(k), Ok(p)) => assert_eq!(
            from_str(&k.to_string()).map(|tree| tree.to_string()),
            Ok(p.to_string()),
            "{payload}"
        ),
        (Err(k), Err(p)) => assert_eq!(k, p, "{payload}"),
        _ => panic!("{payload}: {keeping:?} vs {parsing:?}"),
    }
    keeping.ok().map(|v| v["a"][0]["v"].clone())
}

#[test]
fn a_compact_payload_is_kept_as_its_text() {
    for payload in [
        r#"{"a":1,"b":[true,false,null,-0.5,"x\"\\\n\r\t\b\f\u0001\u001f/é"],"c":{}}"#,
        "[]",
        "{}",
        r#"[{"b":1,"c":2},[[]],"",0,-12,1.50]"#,
        // Members in the producer's order (JSON.stringify's, Jackson's), kept as sent.
        r#"{"orderId":"o-1","customerId":"c-7","items":[{"sku":"b","qty":2,"price":1.50}]}"#,
        r#"{"b":1,"a":2,"c":{"z":1,"y":2}}"#,
    ] {
        assert_eq!(kept(payload), Some(Value::Raw(payload.to_string())));
    }
}

#[test]
fn a_payload_written_otherwise_is_parsed_and_written_as_ever() {
    for payload in [
        r#"{"a":1,"a":2}"#,
        r#"{"b":1,"a":2,"b":3}"#,
        r#"{ "a":1}"#,
        r#"[1 ,2]"#,
        "[1,2\n]",
        r#"["\/"]"#,
        r#"["\u0041"]"#,
        r#"["\u001F"]"#,
        r#"["\u000a"]"#,
        r#"["\ud83d\ude00"]"#,
        r#"{"\u0061":1}"#,
        r#"[1e5]"#,
        r#"[1E-5]"#,
        r#"["\u007f"]"#,
        r#"{"x":1,"id":"e-1","data":{}}"#,
    ] {
        let v = kept(payload);
        assert!(
            v.as_ref().is_some_and(|v| !matches!(v, Value::Raw(_))),
            "{payload}: {v:?}"
        );
    }
    // Scalars are values as ever; the `unless` members count at the top only, all of them.
    assert_eq!(kept(r#""s""#), Some(Value::from("s")));
    assert!(matches!(
        kept(r#"{"a":{"data":1,"id":1}}"#),
        Some(Value::Raw(_))
    ));
    assert!(matches!(
        kept(r#"{"id":"o-1","total":1}"#),
        Some(Value::Raw(_))
    ));
    assert!(matches!(kept(r#"{"data":1,"x":2}"#), Some(Value::Raw(_))));
    assert!(matches!(
        kept(r#"{"id":1,"specversion":2}"#),
        Some(Value::Object(_))
    ));
    // Invalid text: the parser's error, at the same place.
    for payload in [
        "[1,]",
        "{\"a\":}",
        "[01]",
        "[1.]",
        "[-]",
        "[tru]",
        "[\"\u{1}\"]",
        "[\"\\x\"]",
        "[1e999]",
        "{\"a\":1",
        "[",
        "[\"\\u00",
        "{1:2}",
        "[]]",
    ] {
        assert_eq!(kept(payload), None, "{payload}");
    }
    // Nesting: the parser's limit holds for kept text too.
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(matches!(kept(&deep(MAX_DEPTH - 3)), Some(Value::Raw(_))));
    assert_eq!(kept(&deep(MAX_DEPTH - 2)), None);
}

#[test]
fn pointer_tokens_unescape_as_two_replaces_would() {
    let pieces = ["~", "0", "1", "~0", "~1", "a", "/", "é"];
    let mut tokens = vec![String::new()];
    for _ in 0..4 {
        tokens = tokens
            .iter()
            .flat_map(|t| pieces.iter().map(move |p| format!("{t}{p}")))
            .collect();
        for t in &tokens {
            assert_eq!(
                super::unescape_token(t),
                t.replace("~1", "/").replace("~0", "~"),
                "{t}"
            );
        }
    }
}

#[test]
fn a_pointer_into_kept_text_finds_what_it_finds_in_the_tree() {
    let text = r#"{"z":{"a/b":[10,{"m~n":"x","":null}],"k":"v"},"orderId":"o-1","list":[[],[1,2,3]],"n":1.50}"#;
    let tree = from_str(text).unwrap();
    for pointer in [
        "",
        "/z",
        "/z/k",
        "/z/a~1b",
        "/z/a~1b/0",
        "/z/a~1b/1",
        "/z/a~1b/1/m~0n",
        "/z/a~1b/1/",
        "/orderId",
        "/list/1/2",
        "/list/0",
        "/list/0/0",
        "/list/01",
        "/list/2",
        "/list/-1",
        "/n",
        "/missing",
        "/orderId/0",
        "orderId",
        "/z/a~1b/+1",
    ] {
        assert_eq!(
            raw_pointer(text, pointer),
            tree.pointer(pointer).cloned(),
            "{pointer}"
        );
    }
}
