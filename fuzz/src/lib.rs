//! What the fuzz targets share: cutting an input into the pieces a network read might deliver
//! it in, so that every decoder that keeps state between reads is fed arbitrary splits; a
//! mutation that writes numbers at the edges of their types into text inputs; and an allocator
//! that turns an allocation no small input could justify into a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// `data` cut into consecutive pieces (empty ones included) whose lengths follow from `seed`:
/// the same seed always cuts the same way, so a crash reproduces from its input alone.
pub fn pieces(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    // Seed 0 reads byte by byte; other seeds cut at pseudo-random points up to `longest`.
    let longest = match seed {
        0 => 1,
        s => 1 + usize::from(s % 64),
    };
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = match seed {
            0 => 1,
            _ => (state as usize) % (longest + 1),
        };
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// Numbers where integer and float arithmetic breaks: type edges, and floats too large for an
/// `f32`. Byte-level mutation almost never writes a twenty-digit number, and overflow has no
/// branch for coverage to lead the fuzzer towards.
const EDGE_NUMBERS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"255",
    b"65535",
    b"2147483647",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1e39",
    b"-1e39",
    b"1e308",
];

/// The mutation step of the text targets (`fuzz_mutator!`): one call in four replaces a run of
/// digits in the input with one of `EDGE_NUMBERS`; the others are libFuzzer's own mutations.
pub fn mutate_with_edge_numbers(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> usize {
    if seed % 4 == 0
        && let Some(size) = write_edge_number(data, size, max_size, seed)
    {
        return size;
    }
    libfuzzer_sys::fuzzer_mutate(data, size, max_size)
}

fn write_edge_number(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> Option<usize> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < size {
        if data[i].is_ascii_digit() {
            let start = i;
            while i < size && data[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        }
        i += 1;
    }
    let &(start, end) = runs.get((seed >> 2) as usize % runs.len().max(1))?;
    let number = EDGE_NUMBERS[(seed >> 16) as usize % EDGE_NUMBERS.len()];
    let new_size = size - (end - start) + number.len();
    if new_size > max_size.min(data.len()) {
        return None;
    }
    data.copy_within(end..size, start + number.len());
    data[start..start + number.len()].copy_from_slice(number);
    Some(new_size)
}

/// The most one allocation may ask for. Fuzz inputs are a few KB: a parser that wants more
/// took a length from its input without checking it against what the input holds.
pub const MAX_ALLOCATION: usize = 64 << 20;

/// The system allocator, except that an allocation over `MAX_ALLOCATION` prints where it was
/// asked for and aborts, which libFuzzer reports as a crash. (Without the address sanitizer,
/// libFuzzer's own `-malloc_limit_mb` has no effect, and memory that is reserved but never
/// touched does not show in the RSS that `-rss_limit_mb` watches.)
pub struct CappedAllocator;

thread_local! {
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

impl CappedAllocator {
    fn check(&self, layout: Layout) {
        if layout.size() <= MAX_ALLOCATION || REPORTING.with(|r| r.replace(true)) {
            return;
        }
        eprintln!(
            "allocation of {} bytes (more than {MAX_ALLOCATION}) asked for at:\n{}",
            layout.size(),
            std::backtrace::Backtrace::force_capture()
        );
        std::process::abort();
    }
}

// SAFETY: every call is passed on to `System` unchanged; `check` only reads the layout.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check(layout);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.check(layout);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        self.check(unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) });
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::{pieces, write_edge_number};

    #[test]
    fn an_edge_number_replaces_a_run_of_digits() {
        let mut data = *b"{\"a\":12,\"b\":3}\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        let max_size = data.len();
        let size = write_edge_number(&mut data, 14, max_size, (1 << 2) | (9 << 16)).unwrap();
        assert_eq!(&data[..size], b"{\"a\":12,\"b\":18446744073709551615}");
        assert_eq!(
            write_edge_number(&mut b"no digits".to_owned(), 9, 9, 0),
            None
        );
    }

    #[test]
    fn pieces_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in 0..=255u8 {
            assert_eq!(pieces(seed, &data).concat(), data, "seed {seed}");
        }
        assert!(pieces(0, &data).iter().all(|p| p.len() == 1));
    }
}
