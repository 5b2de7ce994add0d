"""A generic gRPC client that is not grpc-js: Debian's python3-grpcio and python3-protobuf.

Usage: grpc_reflect_call.py ADDRESS FULL_METHOD REQUEST_JSON [CA CERT KEY]
  e.g. grpc_reflect_call.py 198.18.1.1:50051 bpfleet.v1.ControlService/GetRollout '{"id": "..."}' ca.crt viewer.crt viewer.key

With CA CERT KEY (PEM files) it speaks mutual TLS with that client certificate; without,
plaintext (a control plane started with --insecure).

Like grpcurl: it asks the server's reflection service (grpc.reflection.v1) for the file
descriptors of the service, builds them into a protobuf DescriptorPool (which validates
them as protoc does), makes the request and response classes from the pool, calls the
method and prints the response as JSON. Exit 2: the descriptors were rejected; exit 1:
any other failure; the reason goes to stderr.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def reflection_messages():
    """The request and response messages of grpc/reflection/v1/reflection.proto, built from a
    hand-written descriptor (only the fields used here: the wire format skips the others)."""
    f = descriptor_pb2.FileDescriptorProto(name="bpfleet_reflection_client.proto", package="grpc.reflection.v1", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto

    def msg(name, fields):
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name

    opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    msg("ServerReflectionRequest", [
        ("host", 1, T.TYPE_STRING, opt, None),
        ("file_by_filename", 3, T.TYPE_STRING, opt, None),
        ("file_containing_symbol", 4, T.TYPE_STRING, opt, None),
    ])
    msg("FileDescriptorResponse", [("file_descriptor_proto", 1, T.TYPE_BYTES, rep, None)])
    msg("ErrorResponse", [("error_code", 1, T.TYPE_INT32, opt, None), ("error_message", 2, T.TYPE_STRING, opt, None)])
    msg("ServerReflectionResponse", [
        ("file_descriptor_response", 4, T.TYPE_MESSAGE, opt, ".grpc.reflection.v1.FileDescriptorResponse"),
        ("error_response", 7, T.TYPE_MESSAGE, opt, ".grpc.reflection.v1.ErrorResponse"),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_class(pool, "grpc.reflection.v1.ServerReflectionRequest"), message_class(pool, "grpc.reflection.v1.ServerReflectionResponse")


def message_class(pool, full_name):
    desc = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def fetch_files(channel, symbol):
    """Every FileDescriptorProto the symbol's file needs, by file name."""
    Req, Resp = reflection_messages()
    call = channel.stream_stream(REFLECTION, request_serializer=Req.SerializeToString, response_deserializer=Resp.FromString)
    files = {}

    def ask(req):
        (resp,) = list(call(iter([req]), timeout=10))
        if resp.HasField("error_response"):
            raise RuntimeError(f"reflection: {resp.error_response.error_message} (code {resp.error_response.error_code})")
        for raw in resp.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files.setdefault(fd.name, fd)

    ask(Req(file_containing_symbol=symbol))
    while True:
        missing = {d for fd in files.values() for d in fd.dependency} - files.keys()
        if not missing:
            return files
        for name in missing:
            ask(Req(file_by_filename=name))


def build_pool(files):
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):
        if name in added:
            return
        for dep in files[name].dependency:
            add(dep)
        pool.Add(files[name])
        added.add(name)

    for name in sorted(files):
        add(name)
    return pool


def main(argv):
    if len(argv) not in (4, 7) or "/" not in argv[2]:
        print(__doc__, file=sys.stderr)
        return 1
    address, method, request_json = argv[1], argv[2], argv[3]
    service, name = method.split("/", 1)
    if len(argv) == 7:
        ca, cert, key = (open(path, "rb").read() for path in argv[4:7])
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert))
    else:
        channel = grpc.insecure_channel(address)
    files = fetch_files(channel, service)
    try:
        pool = build_pool(files)
        m = pool.FindMethodByName(f"{service}.{name}")
    except Exception as err:  # the protobuf runtime raises TypeError or its own errors
        print(f"descriptors rejected: {err}", file=sys.stderr)
        return 2
    Req, Resp = message_class(pool, m.input_type.full_name), message_class(pool, m.output_type.full_name)
    req = json_format.ParseDict(json.loads(request_json), Req())
    resp = channel.unary_unary(f"/{service}/{name}", request_serializer=Req.SerializeToString, response_deserializer=Resp.FromString)(req, timeout=10)
    print(json_format.MessageToJson(resp, preserving_proto_field_name=False))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except grpc.RpcError as err:
        print(f"rpc failed: {err.code().name}: {err.details()}", file=sys.stderr)
        sys.exit(1)
