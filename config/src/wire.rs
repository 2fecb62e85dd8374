//! A minimal reader for the protobuf wire format: just enough to pull the
//! few fields Strata needs out of containerd's runtime options without a
//! protobuf code generator or runtime dependency.

use crate::runtime_options::DecodeErrorKind;

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// How a field's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl WireType {
    fn from_tag(tag: u64) -> Result<Self, DecodeErrorKind> {
        Ok(match tag & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            other => return Err(DecodeErrorKind::InvalidWireType(other as u8)),
        })
    }

    /// The name used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::Len => "length-delimited",
            WireType::StartGroup => "start-group",
            WireType::EndGroup => "end-group",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// One decoded field. Only length-delimited payloads are kept; every other
/// wire type is skipped, which is all the messages read here need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    pub(crate) number: u32,
    pub(crate) wire_type: WireType,
    /// The payload of a length-delimited field, empty otherwise.
    pub(crate) bytes: &'a [u8],
    /// Offset of the field's tag within the message.
    pub(crate) offset: usize,
}

/// A wire-format error with the byte offset where it was detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    pub(crate) offset: usize,
    pub(crate) kind: DecodeErrorKind,
}

/// Iterates over the top-level fields of one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Returns the next field, `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<Field<'a>>, WireError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let offset = self.pos;
        let (number, wire_type) = self.read_tag()?;
        let bytes = match wire_type {
            WireType::Len => self.read_len()?,
            WireType::EndGroup => {
                return Err(self.error_at(offset, DecodeErrorKind::UnexpectedEndGroup))
            }
            WireType::StartGroup => {
                self.skip_group(number)?;
                &[]
            }
            other => {
                self.skip_scalar(other)?;
                &[]
            }
        };
        Ok(Some(Field {
            number,
            wire_type,
            bytes,
            offset,
        }))
    }

    fn error_at(&self, offset: usize, kind: DecodeErrorKind) -> WireError {
        WireError { offset, kind }
    }

    fn truncated(&self, what: &'static str) -> WireError {
        self.error_at(self.pos, DecodeErrorKind::Truncated(what))
    }

    fn read_varint(&mut self, what: &'static str) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.truncated(what));
            };
            self.pos += 1;
            let payload = u64::from(byte & 0x7f);
            // The tenth byte may only carry the single remaining bit.
            if i == 9 && payload > 1 {
                return Err(self.error_at(start, DecodeErrorKind::VarintOverflow));
            }
            value |= payload << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error_at(start, DecodeErrorKind::VarintOverflow))
    }

    fn read_tag(&mut self) -> Result<(u32, WireType), WireError> {
        let start = self.pos;
        let tag = self.read_varint("a field tag")?;
        let wire_type = WireType::from_tag(tag).map_err(|kind| self.error_at(start, kind))?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(self.error_at(start, DecodeErrorKind::InvalidFieldNumber(number)));
        }
        // Lossless: checked against MAX_FIELD_NUMBER above.
        Ok((number as u32, wire_type))
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.truncated(what))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn read_len(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.read_varint("a length prefix")?;
        let len = usize::try_from(len).map_err(|_| self.truncated("a length-delimited field"))?;
        self.take(len, "a length-delimited field")
    }

    fn skip_scalar(&mut self, wire_type: WireType) -> Result<(), WireError> {
        match wire_type {
            WireType::Varint => self.read_varint("a varint field").map(drop),
            WireType::Fixed64 => self.take(8, "a fixed64 field").map(drop),
            WireType::Fixed32 => self.take(4, "a fixed32 field").map(drop),
            WireType::Len => self.read_len().map(drop),
            // Groups are handled by `skip_group`; never reached for them.
            WireType::StartGroup | WireType::EndGroup => Ok(()),
        }
    }

    /// Skips a (deprecated, but legal) group, including nested groups, up
    /// to its matching end-group tag. Iterative, so hostile nesting cannot
    /// exhaust the stack.
    fn skip_group(&mut self, number: u32) -> Result<(), WireError> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            if self.pos >= self.buf.len() {
                return Err(self.truncated("a group"));
            }
            let start = self.pos;
            let (number, wire_type) = self.read_tag()?;
            match wire_type {
                WireType::StartGroup => open.push(number),
                WireType::EndGroup if number == innermost => {
                    open.pop();
                }
                WireType::EndGroup => {
                    return Err(self.error_at(start, DecodeErrorKind::UnexpectedEndGroup))
                }
                other => self.skip_scalar(other)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, WireType, Vec<u8>)>, WireError> {
        let mut reader = Reader::new(buf);
        let mut out = Vec::new();
        while let Some(field) = reader.next_field()? {
            out.push((field.number, field.wire_type, field.bytes.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn reads_every_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 2, 3, 4, 5, 6, 7, 8, // 2: fixed64
            0x1a, 0x02, b'h', b'i', // 3: "hi"
            0x23, 0x08, 0x01, 0x24, // 4: group holding 1: varint 1
            0x2d, 1, 2, 3, 4, // 5: fixed32
        ];
        let got = fields(&buf).expect("valid");
        let kinds: Vec<_> = got.iter().map(|(n, w, _)| (*n, *w)).collect();
        assert_eq!(
            kinds,
            [
                (1, WireType::Varint),
                (2, WireType::Fixed64),
                (3, WireType::Len),
                (4, WireType::StartGroup),
                (5, WireType::Fixed32),
            ]
        );
        assert_eq!(got[2].2, b"hi");
    }

    #[test]
    fn nested_groups_are_skipped() {
        // 1: group { 2: group { 3: varint 5 } } then 4: "x"
        let buf = [0x0b, 0x13, 0x18, 0x05, 0x14, 0x0c, 0x22, 0x01, b'x'];
        let got = fields(&buf).expect("valid");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], (4, WireType::Len, b"x".to_vec()));
    }

    #[test]
    fn multi_byte_field_numbers_and_max_varint() {
        // Field 1000 (tag 8000 = 0xc0 0x3e), varint u64::MAX.
        let mut buf = vec![0xc0, 0x3e];
        buf.extend_from_slice(&[0xff; 9]);
        buf.push(0x01);
        assert_eq!(fields(&buf).expect("valid")[0].0, 1000);
    }

    #[test]
    fn errors() {
        let kind = |buf: &[u8]| fields(buf).expect_err("invalid").kind;
        assert_eq!(kind(&[0x08]), DecodeErrorKind::Truncated("a varint field"));
        assert_eq!(kind(&[0x88]), DecodeErrorKind::Truncated("a field tag"));
        assert_eq!(kind(&[0x0a]), DecodeErrorKind::Truncated("a length prefix"));
        assert_eq!(
            kind(&[0x0a, 0x05, b'a']),
            DecodeErrorKind::Truncated("a length-delimited field")
        );
        assert_eq!(
            kind(&[0x09, 0, 0]),
            DecodeErrorKind::Truncated("a fixed64 field")
        );
        assert_eq!(
            kind(&[0x0d, 0]),
            DecodeErrorKind::Truncated("a fixed32 field")
        );
        assert_eq!(
            kind(&[0x0b, 0x08, 0x01]),
            DecodeErrorKind::Truncated("a group")
        );
        assert_eq!(kind(&[0x0b, 0x14]), DecodeErrorKind::UnexpectedEndGroup);
        assert_eq!(kind(&[0x0c]), DecodeErrorKind::UnexpectedEndGroup);
        assert_eq!(kind(&[0x0e]), DecodeErrorKind::InvalidWireType(6));
        assert_eq!(kind(&[0x0f]), DecodeErrorKind::InvalidWireType(7));
        assert_eq!(kind(&[0x02, 0x00]), DecodeErrorKind::InvalidFieldNumber(0));
        let mut overlong = vec![0x08];
        overlong.extend_from_slice(&[0xff; 10]);
        overlong.push(0x01);
        assert_eq!(kind(&overlong), DecodeErrorKind::VarintOverflow);
        let mut too_big = vec![0x08];
        too_big.extend_from_slice(&[0xff; 9]);
        too_big.push(0x02);
        assert_eq!(kind(&too_big), DecodeErrorKind::VarintOverflow);
        // Field number 2^29 does not fit.
        assert_eq!(
            kind(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            DecodeErrorKind::InvalidFieldNumber(1 << 29)
        );
        // A huge length prefix is truncation, not an allocation or overflow.
        assert_eq!(
            kind(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            DecodeErrorKind::Truncated("a length-delimited field")
        );
    }

    #[test]
    fn error_offsets_point_at_the_problem() {
        let err = fields(&[0x08, 0x01, 0x0a, 0x05, b'a']).expect_err("truncated");
        assert_eq!(err.offset, 4);
        let err = fields(&[0x08, 0x01, 0x0e]).expect_err("bad wire type");
        assert_eq!(err.offset, 2);
    }
}
