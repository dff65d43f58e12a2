//! Offset message ids: `hex(store IPv4 (4) | store port i32 (4) | commit-log offset i64 (8))`,
//! 32 upper-case hex digits, as the broker answers a send and every client recomputes from a
//! pulled record's STOREHOST and PHYSICALOFFSET.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The offset message id of a record stored at `offset` by `store`.
pub fn offset_msg_id(store: SocketAddrV4, offset: i64) -> String {
    let o = store.ip().octets();
    format!(
        "{:02X}{:02X}{:02X}{:02X}{:08X}{:016X}",
        o[0],
        o[1],
        o[2],
        o[3],
        u32::from(store.port()),
        offset as u64
    )
}

/// Decodes an offset message id into its store address and commit-log offset.
pub fn parse_offset_msg_id(id: &str) -> Option<(SocketAddrV4, i64)> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let ip = u32::from_str_radix(&id[..8], 16).ok()?;
    let port = u32::from_str_radix(&id[8..16], 16).ok()?;
    let offset = u64::from_str_radix(&id[16..], 16).ok()? as i64;
    Some((
        SocketAddrV4::new(Ipv4Addr::from(ip), u16::try_from(port).ok()?),
        offset,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_match_java_layout() {
        let a: SocketAddrV4 = "127.0.0.1:10911".parse().unwrap();
        let id = offset_msg_id(a, 0x1234);
        assert_eq!(id, "7F00000100002A9F0000000000001234");
        assert_eq!(parse_offset_msg_id(&id), Some((a, 0x1234)));
        assert_eq!(parse_offset_msg_id("zz"), None);
        assert_eq!(
            parse_offset_msg_id("7F000001FFFFFFFF0000000000001234"),
            None
        );
    }
}
