//! diesel table definitions of tracking-service's database; they mirror
//! `migrations/tracking/` and nothing else.

diesel::table! {
    dns_tracked_records (id) {
        id -> BigInt,
        provider -> Text,
        zone -> Text,
        record_id -> Text,
        #[sql_name = "type"]
        rtype -> Text,
        name -> Text,
        content -> Text,
        ttl -> Integer,
        proxied -> Bool,
        priority -> Nullable<Integer>,
        fingerprint -> Text,
        app_managed -> Bool,
        source -> Text,
        is_orphaned -> Bool,
        orphaned_at -> Nullable<BigInt>,
        is_missing -> Bool,
        missing_since -> Nullable<BigInt>,
        drift -> Text,
        tracked_at -> BigInt,
        updated_at -> BigInt,
        first_seen -> BigInt,
        metadata -> Text,
    }
}

diesel::table! {
    dns_declarations (source, name, rtype) {
        source -> Text,
        name -> Text,
        #[sql_name = "type"]
        rtype -> Text,
        content -> Text,
        ttl -> Integer,
        proxied -> Bool,
        priority -> Nullable<Integer>,
        declared_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    orphaned_records_history (id) {
        id -> BigInt,
        provider -> Text,
        zone -> Text,
        record_id -> Text,
        #[sql_name = "type"]
        rtype -> Text,
        name -> Text,
        content -> Text,
        ttl -> Integer,
        proxied -> Bool,
        priority -> Nullable<Integer>,
        source -> Text,
        orphaned_at -> Nullable<BigInt>,
        deleted_at -> BigInt,
        reason -> Text,
        metadata -> Text,
    }
}

diesel::table! {
    dns_pending_intents (id) {
        id -> Text,
        source -> Text,
        action -> Text,
        record_id -> Text,
        name -> Text,
        #[sql_name = "type"]
        rtype -> Text,
        content -> Text,
        ttl -> Integer,
        proxied -> Bool,
        priority -> Nullable<Integer>,
        created_at -> BigInt,
        journal_id -> Text,
    }
}

diesel::table! {
    tracker_state (key) {
        key -> Text,
        value -> Text,
    }
}
