//! The agent's ttrpc server loop against ttrpc's own async client on a
//! socket pair: calls in flight together, a waiting call completed by
//! another, refusals with their status text, and malformed messages.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use protobuf::Message;
use strata_agent::protocol::{MAX_MESSAGE, SERVICE};
use strata_agent::rpc::{serve, status, Handler};
use ttrpc::proto::{Code, MessageHeader, Request, Response, Status, MESSAGE_TYPE_RESPONSE};

/// A mailbox: `Put` stores its payload, `Take` waits for one and returns it,
/// `Refuse` fails with its payload as the text.
#[derive(Default)]
struct Mailbox {
    letters: Mutex<Vec<Vec<u8>>>,
    posted: Condvar,
}

impl Handler for Mailbox {
    fn handle(&self, method: &str, payload: &[u8]) -> Result<Vec<u8>, Status> {
        match method {
            "Put" => {
                self.letters.lock().unwrap().push(payload.to_vec());
                self.posted.notify_all();
                Ok(Vec::new())
            }
            "Take" => {
                let mut letters = self.letters.lock().unwrap();
                while letters.is_empty() {
                    letters = self.posted.wait(letters).unwrap();
                }
                Ok(letters.remove(0))
            }
            "Refuse" => Err(status(
                Code::FAILED_PRECONDITION,
                String::from_utf8_lossy(payload),
            )),
            other => Err(status(
                Code::UNIMPLEMENTED,
                format!("method {other:?} unknown"),
            )),
        }
    }

    fn answered(&self, _method: &str) {}
}

/// The server on one end of a socket pair, in a thread; the other end.
fn start_server() -> (UnixStream, std::thread::JoinHandle<std::io::Result<()>>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || {
        let writer = Arc::new(Mutex::new(theirs.try_clone().unwrap()));
        let mut reader = theirs;
        serve(&mut reader, writer, Arc::new(Mailbox::default()))
    });
    (ours, server)
}

fn client(stream: UnixStream) -> ttrpc::r#async::Client {
    stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(stream).unwrap();
    ttrpc::r#async::Client::new(ttrpc::r#async::transport::Socket::new(stream))
}

fn request(service: &str, method: &str, payload: &[u8]) -> Request {
    let mut request = Request::new();
    request.service = service.into();
    request.method = method.into();
    request.payload = payload.to_vec();
    request
}

#[tokio::test]
async fn a_waiting_call_does_not_hold_up_the_others() {
    let (stream, server) = start_server();
    let client = client(stream);
    let take = tokio::spawn({
        let client = client.clone();
        async move { client.request(request(SERVICE, "Take", b"")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!take.is_finished(), "Take answered with nothing posted");
    // Two more calls go through while Take waits.
    let (a, b) = tokio::join!(
        client.request(request(SERVICE, "Put", b"first")),
        client.request(request(SERVICE, "Refuse", b"executable file not found")),
    );
    a.unwrap();
    match b {
        Err(ttrpc::Error::RpcStatus(s)) => {
            assert_eq!(s.code(), Code::FAILED_PRECONDITION);
            assert_eq!(s.message, "executable file not found");
        }
        other => panic!("a refused call gave {other:?}"),
    }
    let taken = tokio::time::timeout(Duration::from_secs(5), take)
        .await
        .expect("Take still waits after Put")
        .unwrap()
        .unwrap();
    assert_eq!(taken.payload, b"first");
    drop(client);
    // The client's end closing ends the loop cleanly.
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn unknown_services_and_methods_are_refused() {
    let (stream, _server) = start_server();
    let client = client(stream);
    for (service, method) in [("other.Service", "Put"), (SERVICE, "Nothing")] {
        match client.request(request(service, method, b"")).await {
            Err(ttrpc::Error::RpcStatus(s)) => {
                assert_eq!(s.code(), Code::UNIMPLEMENTED, "{service} {method}")
            }
            other => panic!("{service} {method} gave {other:?}"),
        }
    }
}

/// Reads one response message from `stream`.
fn read_response(stream: &mut UnixStream) -> (MessageHeader, Response) {
    let mut header = [0; 10];
    stream.read_exact(&mut header).unwrap();
    let header = MessageHeader::from(header);
    let mut payload = vec![0; header.length as usize];
    stream.read_exact(&mut payload).unwrap();
    (header, Response::parse_from_bytes(&payload).unwrap())
}

fn write_request(stream: &mut UnixStream, id: u32, request: &Request) {
    let payload = request.write_to_bytes().unwrap();
    let mut message: Vec<u8> = MessageHeader::new_request(id, payload.len() as u32).into();
    message.extend_from_slice(&payload);
    stream.write_all(&message).unwrap();
}

#[test]
fn an_oversized_message_is_refused_and_skipped() {
    let (mut stream, server) = start_server();
    let length = MAX_MESSAGE + 1;
    let header: Vec<u8> = MessageHeader::new_request(1, length as u32).into();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            stream.write_all(&header).unwrap();
            stream.write_all(&vec![0xab; length]).unwrap();
            write_request(&mut stream, 3, &request(SERVICE, "Put", b"after"));
        })
    };
    let (header, response) = read_response(&mut stream);
    assert_eq!((header.stream_id, header.type_), (1, MESSAGE_TYPE_RESPONSE));
    assert_eq!(response.status().code(), Code::RESOURCE_EXHAUSTED);
    assert!(
        response.status().message.contains(&length.to_string()),
        "{:?}",
        response.status().message
    );
    // The stream stayed in step: the next request is served.
    let (header, response) = read_response(&mut stream);
    assert_eq!(header.stream_id, 3);
    assert_eq!(response.status().code(), Code::OK);
    writer.join().unwrap();
    drop(stream);
    server.join().unwrap().unwrap();
}

#[test]
fn truncated_messages_end_the_loop_with_an_error() {
    // A header cut short.
    let (mut stream, server) = start_server();
    stream.write_all(&[0, 0, 0, 4, 0]).unwrap();
    drop(stream);
    let e = server.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    // A payload cut short.
    let (mut stream, server) = start_server();
    let header: Vec<u8> = MessageHeader::new_request(1, 100).into();
    stream.write_all(&header).unwrap();
    stream.write_all(&[1; 10]).unwrap();
    drop(stream);
    let e = server.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    // Garbage where a request should be is refused, and serving goes on.
    let (mut stream, server) = start_server();
    let header: Vec<u8> = MessageHeader::new_request(5, 3).into();
    stream.write_all(&header).unwrap();
    stream.write_all(&[0xff, 0xff, 0xff]).unwrap();
    let (header, response) = read_response(&mut stream);
    assert_eq!(header.stream_id, 5);
    assert_eq!(response.status().code(), Code::INVALID_ARGUMENT);
    drop(stream);
    server.join().unwrap().unwrap();
}
