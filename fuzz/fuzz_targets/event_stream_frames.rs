//! AWS event-stream frames, the binary framing of Bedrock's ConverseStream replies. keel reads
//! them through the AWS SDK (cargo feature `bedrock`), whose receiver buffers each read and
//! asks `MessageFrameDecoder` for complete frames; this target does the same with the body cut
//! at arbitrary points. A frame that decodes must encode and decode back equal.
//!
//! Input: a byte choosing where the body is cut into reads (see `keel_fuzz::pieces`), then the
//! body.
#![no_main]

use aws_smithy_eventstream::frame::{
    DecodedFrame, MessageFrameDecoder, read_message_from, write_message_to,
};
use bytes::Bytes;
use bytes_utils::SegmentedBuf;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: keel_fuzz::CappedAllocator = keel_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer: SegmentedBuf<Bytes> = SegmentedBuf::new();
    for piece in keel_fuzz::pieces(seed, body) {
        buffer.push(Bytes::copy_from_slice(piece));
        loop {
            match decoder.decode_frame(&mut buffer) {
                Ok(DecodedFrame::Complete(message)) => {
                    let mut encoded = Vec::new();
                    if write_message_to(&message, &mut encoded).is_ok() {
                        let again =
                            read_message_from(&encoded[..]).expect("an encoded frame decodes");
                        assert_eq!(again, message, "a frame changed in a round trip");
                    }
                }
                Ok(DecodedFrame::Incomplete) => break,
                // The receiver ends the stream with a response error here.
                Err(_) => return,
            }
        }
    }
});
