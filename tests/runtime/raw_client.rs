//! A client's frames sent and read by hand on an authenticated stream, for
//! tests that need what `oar::client` would not send (hostile values,
//! requests pipelined in a chosen order).

use bytes::BytesMut;
use oar::runtime::auth::BoxedStream;
use oar::runtime::wire::frame::{encode_frame, read_frame};
use oar::runtime::wire::proto;
use prost::Message as _;
use tokio::io::AsyncWriteExt;

/// Writes one client request frame and flushes it.
pub(crate) async fn send(stream: &mut BoxedStream, request: proto::ClientRequest) {
    let kind = proto::frame::Kind::ClientRequest(request);
    let body = proto::Frame { kind: Some(kind) }.encode_to_vec();
    let mut out = BytesMut::new();
    encode_frame(&body, &mut out);
    stream.write_all(&out).await.unwrap();
    stream.flush().await.unwrap();
}

/// Reads the next frame, which must be a client response.
pub(crate) async fn receive(stream: &mut BoxedStream) -> proto::ClientResponse {
    let body = read_frame(stream, 1 << 20).await.unwrap();
    match proto::Frame::decode(body).unwrap().kind {
        Some(proto::frame::Kind::ClientResponse(response)) => response,
        other => panic!("not a client response: {other:?}"),
    }
}
