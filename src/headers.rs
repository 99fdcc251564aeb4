//! A header map as a proxy-wasm host serializes it (`proxy_get_header_map_pairs`), read in place: the
//! request path scans names and looks up a few values without decoding every header into a
//! String; a replay decodes the pairs it sends only when it goes out.
//!
//! proxy-wasm map encoding: count (u32 LE), then (key len, value len) pairs (u32 LE each),
//! then each key and value followed by a NUL byte.

#[derive(Debug, Default)]
pub struct RawHeaders(Vec<u8>);

impl RawHeaders {
    pub fn new(bytes: Vec<u8>) -> Self {
        RawHeaders(bytes)
    }

    /// The pairs in order; a malformed map ends early.
    pub fn iter(&self) -> Pairs<'_> {
        let count = read_u32(&self.0, 0).unwrap_or(0);
        Pairs {
            bytes: &self.0,
            left: count,
            sizes_at: 4,
            data_at: 4usize.saturating_add(count.saturating_mul(8)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The first value of `name` (lower case, as Envoy keeps names), if it is UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        let [value] = self.values([name]);
        value
    }

    /// The first value of each of `names` (as [`get`](Self::get)), in one pass over the map
    /// that stops once each name is found.
    pub fn values<const N: usize>(&self, names: [&str; N]) -> [Option<&str>; N] {
        let mut found = [None; N];
        let mut left = N;
        for (k, v) in self.iter() {
            for (name, slot) in names.iter().zip(found.iter_mut()) {
                if slot.is_none() && k == name.as_bytes() {
                    *slot = Some(std::str::from_utf8(v).ok());
                    left -= 1;
                }
            }
            if left == 0 {
                break;
            }
        }
        found.map(Option::flatten)
    }

    /// The map without `name`'s pairs: what the host's map holds once `name` was removed from
    /// it, without reading the map again.
    pub fn without(&self, name: &str) -> RawHeaders {
        let kept: Vec<(&[u8], &[u8])> =
            self.iter().filter(|(k, _)| *k != name.as_bytes()).collect();
        RawHeaders(encode(&kept))
    }

    /// The pairs `keep` accepts, decoded (invalid UTF-8 replaced, as before).
    pub fn to_pairs(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        self.iter()
            .filter_map(|(k, v)| {
                let k = String::from_utf8_lossy(k);
                keep(&k).then(|| (k.into_owned(), String::from_utf8_lossy(v).into_owned()))
            })
            .collect()
    }
}

/// Encodes pairs as the host expects a header map (the format above).
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    // Sized up front: growing it is a reallocation and a copy each time.
    let data: usize = pairs
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + 8 * pairs.len() + data);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b) as usize)
}

pub struct Pairs<'a> {
    bytes: &'a [u8],
    left: usize,
    sizes_at: usize,
    data_at: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let parsed = (|| {
            let key_len = read_u32(self.bytes, self.sizes_at)?;
            let value_len = read_u32(self.bytes, self.sizes_at.checked_add(4)?)?;
            let key_end = self.data_at.checked_add(key_len)?;
            let key = self.bytes.get(self.data_at..key_end)?;
            let value_at = key_end.checked_add(1)?;
            let value_end = value_at.checked_add(value_len)?;
            let value = self.bytes.get(value_at..value_end)?;
            Some((key, value, value_end.checked_add(1)?))
        })();
        match parsed {
            Some((key, value, next_at)) => {
                self.left -= 1;
                self.sizes_at += 8;
                self.data_at = next_at;
                Some((key, value))
            }
            None => {
                self.left = 0;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::{encode, RawHeaders};

    #[test]
    fn values_are_the_first_of_each_name_in_one_pass() {
        let map = RawHeaders::new(encode(&[(":method", "POST"), ("x-a", "1"), ("x-a", "2")]));
        assert_eq!(
            map.values([":method", "x-a", "missing"]),
            [Some("POST"), Some("1"), None]
        );
        // The first pair of a name decides, even when its value is not UTF-8.
        let first_bad = RawHeaders::new(encode(&[
            ("bad".as_bytes(), &[0xff_u8][..]),
            ("bad".as_bytes(), &b"ok"[..]),
        ]));
        assert_eq!(first_bad.values(["bad"]), [None]);
        assert_eq!(first_bad.get("bad"), None);
    }

    #[test]
    fn reads_pairs_in_order_and_looks_up_values() {
        let headers = RawHeaders::new(encode(&[
            (":method", "GET"),
            (":path", "/users/1"),
            ("x-a", ""),
            ("x-a", "second"),
        ]));
        let pairs: Vec<_> = headers.iter().collect();
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs[1], (&b":path"[..], &b"/users/1"[..]));
        assert_eq!(headers.get(":method"), Some("GET"));
        assert_eq!(headers.get("x-a"), Some(""));
        assert_eq!(headers.get("missing"), None);
        assert!(!headers.is_empty());
        assert_eq!(
            headers.to_pairs(|k| !k.starts_with(':')),
            vec![
                ("x-a".to_string(), String::new()),
                ("x-a".to_string(), "second".to_string())
            ]
        );
    }

    #[test]
    fn without_a_name_keeps_the_other_pairs_in_order() {
        let headers = RawHeaders::new(encode(&[
            (":path", "/topics/t"),
            ("content-length", "12"),
            ("x-a", "1"),
            ("content-length", "13"),
        ]));
        let rest = headers.without("content-length");
        assert_eq!(
            rest.to_pairs(|_| true),
            vec![
                (":path".to_string(), "/topics/t".to_string()),
                ("x-a".to_string(), "1".to_string())
            ]
        );
        assert_eq!(rest.without("content-length").to_pairs(|_| true).len(), 2);
        assert!(RawHeaders::default().without("x").is_empty());
    }

    #[test]
    fn malformed_maps_end_early_without_panicking() {
        assert!(RawHeaders::new(Vec::new()).is_empty());
        assert!(RawHeaders::default().is_empty());
        let whole = encode(&[("a", "1"), ("b", "2")]);
        // (The last NUL is not needed to read the last value.)
        for cut in 0..whole.len() - 1 {
            let headers = RawHeaders::new(whole[..cut].to_vec());
            assert!(headers.iter().count() <= 1, "cut at {cut}");
        }
        // A count far larger than the bytes.
        let mut lying = whole.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(RawHeaders::new(lying).iter().count(), 0);
        assert_eq!(RawHeaders::new(whole).iter().count(), 2);
    }
}
