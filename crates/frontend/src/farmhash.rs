//! FarmHash's `Fingerprint64` (farmhashna `Hash64`) and TensorFlow's `FingerprintCat64`, the
//! string hash TensorFlow's lookup and hashing ops use (`to_hash_bucket_fast`, `sparse.cross_hashed`): Keras's Hashing and
//! HashedCrossing layers hash with it.

const K0: u64 = 0xc3a5_c85c_97cb_3127;
const K1: u64 = 0xb492_b66f_be98_f273;
const K2: u64 = 0x9ae1_6a3b_2f90_404f;

fn fetch64(s: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(b)
}

fn fetch32(s: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&s[i..i + 4]);
    u64::from(u32::from_le_bytes(b))
}

fn shift_mix(v: u64) -> u64 {
    v ^ (v >> 47)
}

fn hash_len16(u: u64, v: u64, mul: u64) -> u64 {
    let mut a = (u ^ v).wrapping_mul(mul);
    a ^= a >> 47;
    let mut b = (v ^ a).wrapping_mul(mul);
    b ^= b >> 47;
    b.wrapping_mul(mul)
}

fn len0to16(s: &[u8]) -> u64 {
    let n = s.len();
    let mul = K2.wrapping_add(n as u64 * 2);
    if n >= 8 {
        let a = fetch64(s, 0).wrapping_add(K2);
        let b = fetch64(s, n - 8);
        let c = b.rotate_right(37).wrapping_mul(mul).wrapping_add(a);
        let d = a.rotate_right(25).wrapping_add(b).wrapping_mul(mul);
        return hash_len16(c, d, mul);
    }
    if n >= 4 {
        let a = fetch32(s, 0);
        return hash_len16((n as u64).wrapping_add(a << 3), fetch32(s, n - 4), mul);
    }
    if n > 0 {
        let (a, b, c) = (u32::from(s[0]), u32::from(s[n >> 1]), u32::from(s[n - 1]));
        let y = a.wrapping_add(b << 8);
        let z = (n as u32).wrapping_add(c << 2);
        return shift_mix(u64::from(y).wrapping_mul(K2) ^ u64::from(z).wrapping_mul(K0)).wrapping_mul(K2);
    }
    K2
}

fn len17to32(s: &[u8]) -> u64 {
    let n = s.len();
    let mul = K2.wrapping_add(n as u64 * 2);
    let a = fetch64(s, 0).wrapping_mul(K1);
    let b = fetch64(s, 8);
    let c = fetch64(s, n - 8).wrapping_mul(mul);
    let d = fetch64(s, n - 16).wrapping_mul(K2);
    hash_len16(
        a.wrapping_add(b).rotate_right(43).wrapping_add(c.rotate_right(30)).wrapping_add(d),
        a.wrapping_add(b.wrapping_add(K2).rotate_right(18)).wrapping_add(c),
        mul,
    )
}

fn len33to64(s: &[u8]) -> u64 {
    let n = s.len();
    let mul = K2.wrapping_add(n as u64 * 2);
    let a = fetch64(s, 0).wrapping_mul(K2);
    let b = fetch64(s, 8);
    let c = fetch64(s, n - 8).wrapping_mul(mul);
    let d = fetch64(s, n - 16).wrapping_mul(K2);
    let y = a.wrapping_add(b).rotate_right(43).wrapping_add(c.rotate_right(30)).wrapping_add(d);
    let z = hash_len16(y, a.wrapping_add(b.wrapping_add(K2).rotate_right(18)).wrapping_add(c), mul);
    let e = fetch64(s, 16).wrapping_mul(mul);
    let f = fetch64(s, 24);
    let g = y.wrapping_add(fetch64(s, n - 32)).wrapping_mul(mul);
    let h = z.wrapping_add(fetch64(s, n - 24)).wrapping_mul(mul);
    hash_len16(
        e.wrapping_add(f).rotate_right(43).wrapping_add(g.rotate_right(30)).wrapping_add(h),
        e.wrapping_add(f.wrapping_add(a).rotate_right(18)).wrapping_add(g),
        mul,
    )
}

fn weak_hash32(s: &[u8], i: usize, mut a: u64, mut b: u64) -> (u64, u64) {
    let (w, x, y, z) = (fetch64(s, i), fetch64(s, i + 8), fetch64(s, i + 16), fetch64(s, i + 24));
    a = a.wrapping_add(w);
    b = b.wrapping_add(a).wrapping_add(z).rotate_right(21);
    let c = a;
    a = a.wrapping_add(x).wrapping_add(y);
    b = b.wrapping_add(a.rotate_right(44));
    (a.wrapping_add(z), b.wrapping_add(c))
}

/// FarmHash `Fingerprint64` of `s`.
pub fn fingerprint64(s: &[u8]) -> u64 {
    let n = s.len();
    if n <= 16 {
        return len0to16(s);
    }
    if n <= 32 {
        return len17to32(s);
    }
    if n <= 64 {
        return len33to64(s);
    }
    let seed: u64 = 81;
    let mut x = seed;
    let mut y = seed.wrapping_mul(K1).wrapping_add(113);
    let mut z = shift_mix(y.wrapping_mul(K2).wrapping_add(113)).wrapping_mul(K2);
    let (mut v, mut w) = ((0u64, 0u64), (0u64, 0u64));
    x = x.wrapping_mul(K2).wrapping_add(fetch64(s, 0));
    let end = ((n - 1) / 64) * 64;
    let last64 = end + ((n - 1) & 63) - 63;
    let mut i = 0;
    loop {
        x = x.wrapping_add(y).wrapping_add(v.0).wrapping_add(fetch64(s, i + 8)).rotate_right(37).wrapping_mul(K1);
        y = y.wrapping_add(v.1).wrapping_add(fetch64(s, i + 48)).rotate_right(42).wrapping_mul(K1);
        x ^= w.1;
        y = y.wrapping_add(v.0).wrapping_add(fetch64(s, i + 40));
        z = z.wrapping_add(w.0).rotate_right(33).wrapping_mul(K1);
        v = weak_hash32(s, i, v.1.wrapping_mul(K1), x.wrapping_add(w.0));
        w = weak_hash32(s, i + 32, z.wrapping_add(w.1), y.wrapping_add(fetch64(s, i + 16)));
        std::mem::swap(&mut z, &mut x);
        i += 64;
        if i == end {
            break;
        }
    }
    let mul = K1.wrapping_add((z & 0xff) << 1);
    let i = last64;
    w.0 = w.0.wrapping_add(((n - 1) & 63) as u64);
    v.0 = v.0.wrapping_add(w.0);
    w.0 = w.0.wrapping_add(v.0);
    x = x.wrapping_add(y).wrapping_add(v.0).wrapping_add(fetch64(s, i + 8)).rotate_right(37).wrapping_mul(mul);
    y = y.wrapping_add(v.1).wrapping_add(fetch64(s, i + 48)).rotate_right(42).wrapping_mul(mul);
    x ^= w.1.wrapping_mul(9);
    y = y.wrapping_add(v.0.wrapping_mul(9)).wrapping_add(fetch64(s, i + 40));
    z = z.wrapping_add(w.0).rotate_right(33).wrapping_mul(mul);
    v = weak_hash32(s, i, v.1.wrapping_mul(mul), x.wrapping_add(w.0));
    w = weak_hash32(s, i + 32, z.wrapping_add(w.1), y.wrapping_add(fetch64(s, i + 16)));
    std::mem::swap(&mut z, &mut x);
    hash_len16(
        hash_len16(v.0, w.0, mul).wrapping_add(shift_mix(y).wrapping_mul(K0)).wrapping_add(z),
        hash_len16(v.1, w.1, mul).wrapping_add(x),
        mul,
    )
}

/// TensorFlow's `FingerprintCat64`: the fingerprint of two fingerprints in turn (how
/// `sparse.cross_hashed` folds a row's features together).
pub fn fingerprint_cat64(fp1: u64, fp2: u64) -> u64 {
    const K_MUL: u64 = 0xc6a4_a793_5bd1_e995;
    let mut r = fp1 ^ K_MUL;
    r ^= shift_mix(fp2.wrapping_mul(K_MUL)).wrapping_mul(K_MUL);
    r = r.wrapping_mul(K_MUL);
    r = shift_mix(r).wrapping_mul(K_MUL);
    shift_mix(r)
}

#[cfg(test)]
mod tests {
    /// TensorFlow's `strings.to_hash_bucket_fast(s, 2**62)` (its Fingerprint64 modulo 2^62)
    /// for strings of every length branch.
    #[test]
    fn fingerprints_like_tensorflow() {
        let cases: [(&str, u64); 9] = [
            ("", 1936946117179621455),
            ("a", 3694432073954588131),
            ("hello", 3786372426573024488),
            ("12345", 2715825699093921016),
            ("-3", 245568598851291699),
            ("Éclair café", 391608010223531034),
            ("abcdefghijklmnopqrstuvwxyz0123456", 3791661765545721355),
            (&"x".repeat(100), 1978794067220662815),
            ("The quick brown fox jumps over the lazy dog, twice: the quick brown fox!", 4160272753241145300),
        ];
        for (s, want) in cases {
            assert_eq!(super::fingerprint64(s.as_bytes()) % (1 << 62), want, "{s:?}");
        }
    }
}
