//! The gRPC contract and the server's standard services, driven through generated
//! clients on 127.0.0.1:0.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use prost::Message as _;
use prost_types::source_code_info::Location;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use tidig_engine::server::{self, proto};

/// The contract's own files (the set also holds the imported well-known types).
fn contract() -> Vec<FileDescriptorProto> {
    let set = FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let files: Vec<FileDescriptorProto> = set
        .file
        .into_iter()
        .filter(|f| f.name().starts_with("tidig/"))
        .collect();
    let names: Vec<&str> = files.iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        [
            "tidig/v1/caseworker.proto",
            "tidig/v1/oversight.proto",
            "tidig/v1/research.proto"
        ]
    );
    files
}

/// The leading comment at a descriptor path (see descriptor.proto's `SourceCodeInfo`).
fn comment<'a>(locations: &'a [Location], path: &[i32]) -> Option<&'a str> {
    locations
        .iter()
        .find(|l| l.path == path)
        .and_then(|l| l.leading_comments.as_deref())
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

#[test]
fn the_contract_follows_its_conventions_and_documents_everything() {
    let files = contract();
    let mut used = std::collections::HashSet::new();
    let mut undocumented = Vec::new();
    for file in &files {
        conventions(file, &mut used, &mut undocumented);
    }
    assert_eq!(undocumented, Vec::<String>::new(), "undocumented");
    let methods = |f: &FileDescriptorProto| -> Vec<String> {
        f.service[0]
            .method
            .iter()
            .map(|m| m.name().to_string())
            .collect()
    };
    assert_eq!(
        methods(&files[0]),
        [
            "ListSuggestions",
            "GetSuggestion",
            "RecordDecision",
            "Reidentify",
            "WatchSuggestions",
            "ExportRiskAssessment"
        ]
    );
    assert_eq!(
        methods(&files[1]),
        [
            "StopScoring",
            "ResumeScoring",
            "RegisterObjection",
            "WithdrawObjection",
            "ListObjections",
            "QueryAudit",
            "VerifyAudit",
            "ProveInclusion",
            "ExportAudit",
            "ListModels",
            "GetModelCard",
            "ApproveModel",
            "ActivateModel",
            "RetireModel",
            "RollbackModel",
            "GetStatistics",
            "SubjectAccessReport",
            "RegisterPermit",
            "AmendPermit",
            "RevokePermit",
            "ListPermits",
            "GetPermit"
        ]
    );
    assert_eq!(methods(&files[2]), ["StartRun", "WatchRun", "GetResults"]);
}

/// The research service's messages have no field that could carry a person: no
/// pseudonym, person, subject, national ID or suggestion, and no message type of the
/// other services (whose messages do carry persons).
#[test]
fn no_research_message_can_carry_a_person() {
    let files = contract();
    let research = &files[2];
    let personal = [
        "person",
        "pseudonym",
        "subject",
        "national",
        "suggestion",
        "patient",
    ];
    let mut fields = 0;
    for m in &research.message_type {
        for f in &m.field {
            fields += 1;
            let name = f.name().to_lowercase();
            assert!(
                !personal.iter().any(|p| name.contains(p)),
                "{}.{} could carry a person",
                m.name(),
                f.name()
            );
            if !f.type_name().is_empty() {
                let own = research
                    .message_type
                    .iter()
                    .map(|m| format!(".tidig.v1.{}", m.name()))
                    .chain(
                        research
                            .enum_type
                            .iter()
                            .map(|e| format!(".tidig.v1.{}", e.name())),
                    )
                    .any(|t| t == f.type_name());
                assert!(
                    own,
                    "{}.{} is of another service's type {}",
                    m.name(),
                    f.name(),
                    f.type_name()
                );
            }
        }
    }
    assert!(fields >= 20, "the walk saw {fields} fields");
}

/// One file's conventions; `used` carries the request and response messages already
/// taken by a method of any file.
fn conventions(
    file: &FileDescriptorProto,
    used: &mut std::collections::HashSet<String>,
    undocumented: &mut Vec<String>,
) {
    assert_eq!(file.package(), "tidig.v1");
    let locations = &file.source_code_info.as_ref().unwrap().location;
    // Messages (4) and their fields (2).
    for (i, m) in file.message_type.iter().enumerate() {
        if comment(locations, &[4, i as i32]).is_none() {
            undocumented.push(format!("message {}", m.name()));
        }
        for (j, f) in m.field.iter().enumerate() {
            if comment(locations, &[4, i as i32, 2, j as i32]).is_none() {
                undocumented.push(format!("field {}.{}", m.name(), f.name()));
            }
        }
    }
    // Enums (5) and their values (2): the zero value is `<ENUM>_UNSPECIFIED`.
    for (i, e) in file.enum_type.iter().enumerate() {
        if comment(locations, &[5, i as i32]).is_none() {
            undocumented.push(format!("enum {}", e.name()));
        }
        let zero = e.value.iter().find(|v| v.number() == 0).unwrap();
        assert!(
            zero.name().ends_with("_UNSPECIFIED"),
            "{}: zero value {}",
            e.name(),
            zero.name()
        );
        for (j, v) in e.value.iter().enumerate() {
            if comment(locations, &[5, i as i32, 2, j as i32]).is_none() {
                undocumented.push(format!("value {}", v.name()));
            }
        }
    }
    // Services (6) and methods (2): one request and one response message per method,
    // named after it, used by no other method.
    for (i, s) in file.service.iter().enumerate() {
        if comment(locations, &[6, i as i32]).is_none() {
            undocumented.push(format!("service {}", s.name()));
        }
        for (j, m) in s.method.iter().enumerate() {
            if comment(locations, &[6, i as i32, 2, j as i32]).is_none() {
                undocumented.push(format!("method {}", m.name()));
            }
            assert_eq!(m.input_type(), format!(".tidig.v1.{}Request", m.name()));
            assert_eq!(m.output_type(), format!(".tidig.v1.{}Response", m.name()));
            assert!(used.insert(m.input_type().to_string()));
            assert!(used.insert(m.output_type().to_string()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_stock_clients() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let dir = tempfile::tempdir().unwrap();
    let store = tidig_engine::store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("health.db").display()
    ))
    .await
    .unwrap();
    let mut settings = tidig_engine::settings::Settings::default();
    settings.service.demo = true;
    let app = std::sync::Arc::new(tidig_engine::App::with_store(
        store,
        settings.clone(),
        tidig_governance::RulePack::default_pack().unwrap(),
        tidig_engine::clock::Clock::System,
    ));
    let auth = server::Authenticator::from_settings(&settings).unwrap();
    let (listener, addr) = server::bind("127.0.0.1:0").await.unwrap();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server::serve(app, auth, listener, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = HealthClient::new(channel.clone());
    let status = |service: &str| {
        let mut health = health.clone();
        let request = HealthCheckRequest {
            service: service.into(),
        };
        async move { health.check(request).await.unwrap().into_inner().status() }
    };
    assert_eq!(status("").await, ServingStatus::Serving);
    for service in proto::SERVICES {
        assert_eq!(status(service).await, ServingStatus::Serving, "{service}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Reflection, both versions, lists the contract's service and health.
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("not a service list: {answer:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for service in proto::SERVICES {
            assert!(names.iter().any(|n| n == service), "{names:?}");
        }
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "tidig.v1.RecordDecisionRequest".into(),
            )),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else {
            panic!("no descriptor: {answer:?}");
        };
        let names: Vec<String> = files
            .file_descriptor_proto
            .iter()
            .map(|b| {
                FileDescriptorProto::decode(b.as_slice())
                    .unwrap()
                    .name()
                    .to_string()
            })
            .collect();
        assert!(
            names.iter().any(|n| n == "tidig/v1/caseworker.proto"),
            "{names:?}"
        );
    }

    // Shutdown: the server stops and returns cleanly.
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}
