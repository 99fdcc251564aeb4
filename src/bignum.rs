//! Just enough of an unsigned big integer for exact float reading and writing
//! ([`crate::float_parse`], [`crate::float_text`]): slow, small, no tables.

use std::cmp::Ordering;

/// Little-endian 32-bit limbs.
#[derive(Clone)]
pub(crate) struct Big(Vec<u32>);

impl Big {
    pub(crate) fn from(x: u64) -> Big {
        let mut big = Big(vec![x as u32, (x >> 32) as u32]);
        big.trim();
        big
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    /// self × m + add.
    pub(crate) fn mul_add_small(&mut self, m: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let product = u64::from(*limb) * u64::from(m) + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    pub(crate) fn mul_pow10(&mut self, mut k: u32) {
        while k > 0 {
            let step = k.min(9);
            self.mul_add_small(10u32.pow(step), 0);
            k -= step;
        }
    }

    pub(crate) fn shl(&mut self, bits: u32) {
        let (limbs, bits) = ((bits / 32) as usize, bits % 32);
        if bits > 0 {
            let mut carry = 0u32;
            for limb in &mut self.0 {
                let next = *limb >> (32 - bits);
                *limb = (*limb << bits) | carry;
                carry = next;
            }
            if carry > 0 {
                self.0.push(carry);
            }
        }
        if limbs > 0 && !self.0.is_empty() {
            self.0.splice(0..0, std::iter::repeat_n(0, limbs));
        }
    }

    pub(crate) fn shifted(&self, bits: u32) -> Big {
        let mut big = self.clone();
        big.shl(bits);
        big
    }

    /// self × d.
    pub(crate) fn times(&self, d: u64) -> Big {
        let mut low = self.clone();
        low.mul_add_small(d as u32, 0);
        let mut high = self.clone();
        high.mul_add_small((d >> 32) as u32, 0);
        high.shl(32);
        low.add(&high);
        low.trim();
        low
    }

    pub(crate) fn add(&mut self, other: &Big) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        let mut carry = 0u64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let sum = u64::from(*limb) + u64::from(other.0.get(i).copied().unwrap_or(0)) + carry;
            *limb = sum as u32;
            carry = sum >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    /// self − other, for other ≤ self.
    pub(crate) fn sub(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let diff = i64::from(*limb) - i64::from(other.0.get(i).copied().unwrap_or(0)) - borrow;
            *limb = diff as u32;
            borrow = i64::from(diff < 0);
        }
        self.trim();
    }

    /// The number of significant bits (0 for zero).
    pub(crate) fn bits(&self) -> u32 {
        let limbs = self.significant();
        match limbs.last() {
            Some(top) => 32 * limbs.len() as u32 - top.leading_zeros(),
            None => 0,
        }
    }

    /// The limbs without high zero limbs.
    fn significant(&self) -> &[u32] {
        let len = self
            .0
            .iter()
            .rposition(|&limb| limb != 0)
            .map_or(0, |i| i + 1);
        &self.0[..len]
    }
}

impl PartialEq for Big {
    fn eq(&self, other: &Big) -> bool {
        self.significant() == other.significant()
    }
}

impl Eq for Big {}

impl PartialOrd for Big {
    fn partial_cmp(&self, other: &Big) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Big {
    fn cmp(&self, other: &Big) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len()
            .cmp(&b.len())
            .then_with(|| a.iter().rev().cmp(b.iter().rev()))
    }
}
