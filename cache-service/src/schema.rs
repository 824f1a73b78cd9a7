//! diesel table definitions of cache-service's database; they mirror
//! `migrations/cache/` and nothing else.

diesel::table! {
    dns_records (id) {
        id -> Integer,
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
        comment -> Text,
        is_orphaned -> Bool,
        orphaned_at -> Nullable<BigInt>,
        tracked_at -> Nullable<BigInt>,
        updated_at -> BigInt,
        fingerprint -> Text,
        last_refreshed -> BigInt,
    }
}

diesel::table! {
    cache_state (id) {
        id -> Integer,
        provider -> Text,
        zone -> Text,
        generation -> BigInt,
        last_refreshed -> Nullable<BigInt>,
        last_attempt -> Nullable<BigInt>,
        last_error -> Text,
        last_refresh_duration_ms -> BigInt,
        journal_id -> Text,
    }
}

diesel::table! {
    change_journal (change_id) {
        change_id -> Text,
        op -> Text,
        op_fingerprint -> Text,
        target_id -> Text,
        #[sql_name = "type"]
        rtype -> Text,
        name -> Text,
        content -> Text,
        ttl -> Integer,
        priority -> Nullable<Integer>,
        prior_ids -> Text,
        state -> Text,
        code -> Integer,
        message -> Text,
        record_id -> Text,
        record -> Text,
        created_at -> BigInt,
        settled_at -> Nullable<BigInt>,
        zone -> Text,
    }
}

diesel::table! {
    zone_state (zone) {
        zone -> Text,
        generation -> BigInt,
        last_refreshed -> Nullable<BigInt>,
        last_attempt -> Nullable<BigInt>,
        last_error -> Text,
        last_refresh_duration_ms -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(dns_records, cache_state, change_journal, zone_state);
