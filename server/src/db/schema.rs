//! The one hand-kept diesel schema. It matches `migrations/*/` column for column; types are the
//! portable subset (Text, BigInt, Double, Bool) so that every backend reads the same rows.

diesel::table! {
    meta (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        display_name -> Text,
        role -> Text,
        password_hash -> Text,
        created_at -> Text,
        active -> Bool,
    }
}

diesel::table! {
    device_tokens (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        device_name -> Text,
        created_at -> Text,
        last_used_at -> Text,
        id -> Nullable<Text>,
        revoked_at -> Nullable<Text>,
    }
}

diesel::table! {
    segments (id) {
        id -> Text,
        code -> Text,
        name -> Text,
        name_en -> Nullable<Text>,
        river -> Text,
        bank -> Text,
        line_json -> Text,
        length_m -> Double,
        start_chainage_m -> Double,
        patrol_buffer_m -> Double,
        grid -> Nullable<Text>,
        gauge_station -> Nullable<Text>,
        created_at -> Text,
    }
}

diesel::table! {
    user_segments (user_id, segment_id) {
        user_id -> Text,
        segment_id -> Text,
    }
}

diesel::table! {
    patrols (id) {
        id -> Text,
        patroller_id -> Text,
        started_at -> Text,
        ended_at -> Nullable<Text>,
        notes -> Nullable<Text>,
        weather -> Nullable<Text>,
        point_count -> BigInt,
        recorded_at -> Text,
        origin_device -> Nullable<Text>,
    }
}

diesel::table! {
    patrol_segments (patrol_id, segment_id) {
        patrol_id -> Text,
        segment_id -> Text,
    }
}

diesel::table! {
    track_points (patrol_id, device_seq, idx) {
        patrol_id -> Text,
        device_seq -> BigInt,
        idx -> BigInt,
        recorded_at -> Text,
        lon -> Double,
        lat -> Double,
        accuracy_m -> Nullable<Double>,
    }
}

diesel::table! {
    issues (id) {
        id -> Text,
        segment_id -> Text,
        patrol_id -> Nullable<Text>,
        reporter_id -> Text,
        lon -> Double,
        lat -> Double,
        chainage_m -> Double,
        category -> Text,
        severity -> BigInt,
        outflow -> Nullable<Text>,
        critical -> Bool,
        description -> Text,
        status -> Text,
        assignee_id -> Nullable<Text>,
        reported_at -> Text,
        recorded_at -> Text,
        updated_at -> Text,
        due_at -> Nullable<Text>,
    }
}

diesel::table! {
    issue_events (id) {
        id -> Text,
        issue_id -> Text,
        kind -> Text,
        by_id -> Text,
        at -> Text,
        recorded_at -> Text,
        note -> Nullable<Text>,
        assignee_id -> Nullable<Text>,
        duplicate_of -> Nullable<Text>,
        due_at -> Nullable<Text>,
        rejected_reason -> Nullable<Text>,
    }
}

diesel::table! {
    issue_photos (owner_id, sha256) {
        issue_id -> Text,
        owner_id -> Text,
        sha256 -> Text,
        position -> BigInt,
    }
}

diesel::table! {
    photos (sha256) {
        sha256 -> Text,
        size_bytes -> BigInt,
        content_type -> Text,
        uploaded_by -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    uploads (id) {
        id -> Text,
        sha256 -> Text,
        length -> BigInt,
        content_type -> Nullable<Text>,
        created_by -> Text,
        created_at -> Text,
        upload_offset -> BigInt,
        lease_until -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
    }
}

diesel::table! {
    mutations (id) {
        id -> Text,
        device_id -> Text,
        user_id -> Text,
        device_seq -> BigInt,
        kind -> Text,
        fingerprint -> Text,
        result_json -> Text,
        applied_at -> Text,
    }
}

diesel::table! {
    changes (seq) {
        seq -> BigInt,
        entity -> Text,
        entity_id -> Text,
        op -> Text,
        data_json -> Text,
        public -> Bool,
        owner_id -> Nullable<Text>,
        segment_id -> Nullable<Text>,
        assignee_id -> Nullable<Text>,
        created_at -> Text,
        origin_device -> Nullable<Text>,
    }
}

diesel::table! {
    patrol_coverage (patrol_id, segment_id) {
        patrol_id -> Text,
        segment_id -> Text,
        patroller_id -> Text,
        intervals_json -> Text,
        covered_m -> Double,
        ratio -> Double,
        first_at -> Text,
        last_at -> Text,
        mark_json -> Nullable<Text>,
        updated_at -> Text,
    }
}

diesel::table! {
    flood_stage_settings (id) {
        id -> Text,
        stage -> Text,
        set_by -> Text,
        set_at -> Text,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    depots (id) {
        id -> Text,
        code -> Text,
        name -> Text,
        name_en -> Nullable<Text>,
        owner -> Text,
        lon -> Nullable<Double>,
        lat -> Nullable<Double>,
        created_at -> Text,
    }
}

diesel::table! {
    items (id) {
        id -> Text,
        code -> Text,
        name -> Text,
        name_en -> Nullable<Text>,
        unit -> Text,
        category -> Text,
        ages -> Bool,
        created_at -> Text,
    }
}

diesel::table! {
    quotas (depot_id, item_id) {
        depot_id -> Text,
        item_id -> Text,
        quantity -> BigInt,
    }
}

diesel::table! {
    lots (id) {
        id -> Text,
        depot_id -> Text,
        item_id -> Text,
        quantity -> BigInt,
        received_on -> Text,
        expires_on -> Nullable<Text>,
    }
}

diesel::table! {
    stock_movements (id) {
        id -> Text,
        depot_id -> Text,
        item_id -> Text,
        lot_id -> Nullable<Text>,
        kind -> Text,
        quantity -> BigInt,
        segment_id -> Nullable<Text>,
        by_user -> Text,
        device_at -> Nullable<Text>,
        note -> Nullable<Text>,
        recorded_at -> Text,
    }
}

diesel::table! {
    stock_balances (depot_id, item_id) {
        depot_id -> Text,
        item_id -> Text,
        on_hand -> BigInt,
    }
}

diesel::table! {
    alerts (id) {
        id -> Text,
        kind -> Text,
        subject -> Text,
        drill -> Bool,
        level -> Text,
        message -> Text,
        message_en -> Text,
        segment_id -> Nullable<Text>,
        issue_id -> Nullable<Text>,
        station -> Nullable<Text>,
        owner_id -> Nullable<Text>,
        public -> Bool,
        details_json -> Text,
        raised_at -> Text,
        updated_at -> Text,
        acknowledged_at -> Nullable<Text>,
        acknowledged_by -> Nullable<Text>,
        resolved_at -> Nullable<Text>,
    }
}

diesel::table! {
    stations (id) {
        id -> Text,
        code -> Text,
        name -> Text,
        name_en -> Nullable<Text>,
        river -> Text,
        lon -> Nullable<Double>,
        lat -> Nullable<Double>,
        datum -> Nullable<Text>,
        watch_m -> Double,
        warning_m -> Double,
        guarantee_m -> Double,
        created_at -> Text,
    }
}

diesel::table! {
    station_readings (station_id, series, observed_at) {
        station_id -> Text,
        series -> Text,
        observed_at -> Text,
        level_m -> Double,
        stage -> Text,
        rise_m -> Double,
        recorded_at -> Text,
    }
}

diesel::table! {
    station_stages (station_id, series) {
        station_id -> Text,
        series -> Text,
        stage -> Text,
        since -> Text,
        observed_at -> Text,
        level_m -> Double,
        rising -> Bool,
        updated_at -> Text,
    }
}

diesel::table! {
    response_levels (id) {
        id -> Text,
        river -> Text,
        level -> Nullable<Text>,
        declared_by -> Text,
        declared_at -> Text,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    drills (id) {
        id -> Text,
        station_id -> Text,
        speed -> Double,
        state -> Text,
        series_json -> Text,
        readings_total -> BigInt,
        readings_fed -> BigInt,
        started_by -> Text,
        started_at -> Text,
        ended_at -> Nullable<Text>,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Text,
        url -> Text,
        secret -> Text,
        kinds -> Text,
        format -> Text,
        include_drill -> Bool,
        created_by -> Text,
        created_at -> Text,
        deleted_at -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        webhook_id -> Text,
        seq -> BigInt,
        alert_id -> Text,
        event -> Text,
        alert_json -> Text,
        state -> Text,
        attempts -> BigInt,
        next_attempt_at -> Text,
        lease_until -> Nullable<Text>,
        leased_by -> Nullable<Text>,
        last_status -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        history_json -> Text,
        created_at -> Text,
        delivered_at -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    stations,
    station_readings,
    station_stages,
    response_levels,
    drills,
    webhooks,
    webhook_deliveries,
    alerts,
    depots,
    items,
    quotas,
    lots,
    stock_movements,
    stock_balances,
    patrol_coverage,
    flood_stage_settings,
    meta,
    users,
    device_tokens,
    segments,
    user_segments,
    patrols,
    patrol_segments,
    track_points,
    issues,
    issue_events,
    issue_photos,
    photos,
    uploads,
    mutations,
    changes,
    audit,
    login_attempts,
);

diesel::table! {
    audit (seq) {
        seq -> BigInt,
        at -> Text,
        actor_id -> Nullable<Text>,
        actor_name -> Nullable<Text>,
        token_id -> Nullable<Text>,
        device_name -> Nullable<Text>,
        address -> Nullable<Text>,
        kind -> Text,
        subject -> Nullable<Text>,
        detail_json -> Text,
    }
}

diesel::table! {
    login_attempts (id) {
        id -> BigInt,
        username -> Text,
        address -> Text,
        at -> Text,
        success -> Bool,
    }
}
