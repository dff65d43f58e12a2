//! Request and response codes (`RequestCode.java`, `ResponseCode.java`,
//! `RemotingSysResponseCode.java` of RocketMQ 4.9.7).

/// Request codes.
pub mod request {
    /// Send one message (V1 header; the C++ client's batches too).
    pub const SEND_MESSAGE: i32 = 10;
    /// Pull messages (long polling).
    pub const PULL_MESSAGE: i32 = 11;
    /// Messages by key (or by UNIQ_KEY).
    pub const QUERY_MESSAGE: i32 = 12;
    /// A consumer group's committed offset of a queue.
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    /// Commits a consumer offset.
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    /// Creates or updates a topic on a broker.
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    /// Every topic config of a broker.
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    /// The broker's runtime figures (a key/value table).
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    /// The offset of a queue nearest to a timestamp.
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    /// A queue's max offset.
    pub const GET_MAX_OFFSET: i32 = 30;
    /// A queue's min offset.
    pub const GET_MIN_OFFSET: i32 = 31;
    /// Store time of a queue's first message.
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    /// One message by commit-log offset.
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    /// Client registration: producer and consumer groups, subscriptions.
    pub const HEART_BEAT: i32 = 34;
    /// Client goodbye.
    pub const UNREGISTER_CLIENT: i32 = 35;
    /// A consumer returns a message for retry.
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    /// Commit or roll back a half message.
    pub const END_TRANSACTION: i32 = 37;
    /// Client ids of a consumer group.
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    /// Broker -> producer: what became of a transaction?
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    /// Broker -> consumer: the group's members changed, rebalance now.
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    /// Lock queues for an orderly consumer.
    pub const LOCK_BATCH_MQ: i32 = 41;
    /// Release queue locks.
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    /// A consumer checks that the broker supports its subscription type.
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    /// A KV config value from the NameServer.
    pub const GET_KV_CONFIG: i32 = 101;
    /// A topic's route.
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    /// Every broker group and cluster.
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    /// Creates or updates a consumer group.
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    /// Every consumer group config of a broker.
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    /// Offsets of every queue of a topic on a broker.
    pub const GET_TOPIC_STATS_INFO: i32 = 202;
    /// Connections of a consumer group.
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    /// Connections of a producer group.
    pub const GET_PRODUCER_CONNECTION_LIST: i32 = 204;
    /// Every topic the NameServer knows.
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    /// Deletes a consumer group.
    pub const DELETE_SUBSCRIPTIONGROUP: i32 = 207;
    /// A consumer group's offsets and lag.
    pub const GET_CONSUME_STATS: i32 = 208;
    /// Deletes a topic on a broker.
    pub const DELETE_TOPIC_IN_BROKER: i32 = 215;
    /// Deletes a topic's route on the NameServer.
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    /// Topics of a cluster.
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    /// Broker -> consumer: runtime info (admin tools).
    pub const GET_CONSUMER_RUNNING_INFO: i32 = 307;
    /// Send a batch (V2 header, `m` = true).
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    /// Send one message (V2 single-letter header).
    pub const SEND_MESSAGE_V2: i32 = 310;

    /// The name of a request code (RocketMQ's `RequestCode` constant), for logs and
    /// metrics; `None` for a code this crate does not know.
    pub fn name(code: i32) -> Option<&'static str> {
        Some(match code {
            SEND_MESSAGE => "SEND_MESSAGE",
            PULL_MESSAGE => "PULL_MESSAGE",
            QUERY_MESSAGE => "QUERY_MESSAGE",
            QUERY_CONSUMER_OFFSET => "QUERY_CONSUMER_OFFSET",
            UPDATE_CONSUMER_OFFSET => "UPDATE_CONSUMER_OFFSET",
            UPDATE_AND_CREATE_TOPIC => "UPDATE_AND_CREATE_TOPIC",
            GET_ALL_TOPIC_CONFIG => "GET_ALL_TOPIC_CONFIG",
            GET_BROKER_RUNTIME_INFO => "GET_BROKER_RUNTIME_INFO",
            SEARCH_OFFSET_BY_TIMESTAMP => "SEARCH_OFFSET_BY_TIMESTAMP",
            GET_MAX_OFFSET => "GET_MAX_OFFSET",
            GET_MIN_OFFSET => "GET_MIN_OFFSET",
            GET_EARLIEST_MSG_STORETIME => "GET_EARLIEST_MSG_STORETIME",
            VIEW_MESSAGE_BY_ID => "VIEW_MESSAGE_BY_ID",
            HEART_BEAT => "HEART_BEAT",
            UNREGISTER_CLIENT => "UNREGISTER_CLIENT",
            CONSUMER_SEND_MSG_BACK => "CONSUMER_SEND_MSG_BACK",
            END_TRANSACTION => "END_TRANSACTION",
            GET_CONSUMER_LIST_BY_GROUP => "GET_CONSUMER_LIST_BY_GROUP",
            CHECK_TRANSACTION_STATE => "CHECK_TRANSACTION_STATE",
            NOTIFY_CONSUMER_IDS_CHANGED => "NOTIFY_CONSUMER_IDS_CHANGED",
            LOCK_BATCH_MQ => "LOCK_BATCH_MQ",
            UNLOCK_BATCH_MQ => "UNLOCK_BATCH_MQ",
            CHECK_CLIENT_CONFIG => "CHECK_CLIENT_CONFIG",
            GET_KV_CONFIG => "GET_KV_CONFIG",
            GET_ROUTEINFO_BY_TOPIC => "GET_ROUTEINFO_BY_TOPIC",
            GET_BROKER_CLUSTER_INFO => "GET_BROKER_CLUSTER_INFO",
            UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP",
            GET_ALL_SUBSCRIPTIONGROUP_CONFIG => "GET_ALL_SUBSCRIPTIONGROUP_CONFIG",
            GET_TOPIC_STATS_INFO => "GET_TOPIC_STATS_INFO",
            GET_CONSUMER_CONNECTION_LIST => "GET_CONSUMER_CONNECTION_LIST",
            GET_PRODUCER_CONNECTION_LIST => "GET_PRODUCER_CONNECTION_LIST",
            GET_ALL_TOPIC_LIST_FROM_NAMESERVER => "GET_ALL_TOPIC_LIST_FROM_NAMESERVER",
            DELETE_SUBSCRIPTIONGROUP => "DELETE_SUBSCRIPTIONGROUP",
            GET_CONSUME_STATS => "GET_CONSUME_STATS",
            DELETE_TOPIC_IN_BROKER => "DELETE_TOPIC_IN_BROKER",
            DELETE_TOPIC_IN_NAMESRV => "DELETE_TOPIC_IN_NAMESRV",
            GET_TOPICS_BY_CLUSTER => "GET_TOPICS_BY_CLUSTER",
            GET_CONSUMER_RUNNING_INFO => "GET_CONSUMER_RUNNING_INFO",
            SEND_BATCH_MESSAGE => "SEND_BATCH_MESSAGE",
            SEND_MESSAGE_V2 => "SEND_MESSAGE_V2",
            _ => return None,
        })
    }
}

/// Response codes.
pub mod response {
    /// Done.
    pub const SUCCESS: i32 = 0;
    /// A failure (retried by every client's send path).
    pub const SYSTEM_ERROR: i32 = 1;
    /// Flow control: back off (Java throws it at once).
    pub const SYSTEM_BUSY: i32 = 2;
    /// The request code is not served.
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    /// The message is too large or malformed.
    pub const MESSAGE_ILLEGAL: i32 = 13;
    /// No leader / shutting down: retried by every client.
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    /// The topic or broker forbids the operation.
    pub const NO_PERMISSION: i32 = 16;
    /// The topic does not exist.
    pub const TOPIC_NOT_EXIST: i32 = 17;
    /// No new message: pull again (after a long poll).
    pub const PULL_NOT_FOUND: i32 = 19;
    /// Nothing matched the filter: pull again at `nextBeginOffset` at once.
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    /// The requested offset is out of range: continue at `nextBeginOffset`.
    pub const PULL_OFFSET_MOVED: i32 = 21;
    /// The queried thing does not exist.
    pub const QUERY_NOT_FOUND: i32 = 22;
    /// The subscription expression does not parse.
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    /// The pull names no subscription and none was registered by heartbeat.
    pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
    /// The consumer group does not exist.
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
}
