-- The benchmark's data set: row n is the same incident on every run (every "random"
-- choice is a hash of n), so a data set of any size is reproducible and grows by
-- appending. Parameters: %(first)s and %(last)s, the row numbers to add.
-- Triggers are off for the load (session_replication_role = replica, set by the
-- caller): no stream event per seeded row; the caller recounts afterwards.
with
words as (
    select array[
        'engine', 'medic', 'ladder', 'respond', 'respond', 'to', 'the', 'report', 'of', 'smoke',
        'showing', 'from', 'a', 'two', 'story', 'residential', 'patient', 'conscious',
        'breathing', 'fall', 'victim', 'elderly', 'female', 'male', 'chest', 'pain',
        'difficulty', 'vehicle', 'versus', 'pole', 'airbags', 'deployed', 'fuel', 'leak',
        'alarm', 'sounding', 'commercial', 'structure', 'caller', 'states', 'flames',
        'visible', 'investigate', 'odor', 'of', 'gas', 'in', 'the', 'area', 'units',
        'staging', 'command', 'established', 'on', 'side', 'alpha', 'water', 'supply',
        'hydrant', 'rescue', 'extrication', 'needed', 'brush', 'near', 'the', 'trail'
    ] as w
),

vocab as (
    select
        array[
            'Structure Fire', 'Medical Emergency', 'Traffic Collision', 'Vehicle Fire',
            'Brush Fire', 'Alarm Activation', 'Gas Leak', 'Hazmat', 'Rescue',
            'Smoke Investigation', 'Water Rescue', 'Lift Assist'
        ] as types,
        array[
            'E1', 'E2', 'E3', 'E4', 'E5', 'E6', 'E7', 'E8', 'E9', 'E10', 'E11', 'E12',
            'E14', 'E15', 'E16', 'E17', 'E18', 'E19', 'E20', 'E21', 'L1', 'L2', 'L3', 'L4',
            'M1', 'M2', 'M3', 'M4', 'M5', 'M6', 'M7', 'M8', 'BC1', 'BC2', 'R1', 'HM1'
        ] as units,
        array['FD Dispatch', 'Fire Tac 2', 'Fire Tac 3', 'EMS 1', 'Ops 4'] as channels,
        array[
            'Main', 'Oak', 'Maple', 'Cedar', 'Pine', 'Elm', 'Washington', 'Lake', 'Hill',
            'Sunset', 'Park', 'River', 'Church', 'Mill', 'Spring', 'Ridge', 'Valley',
            'Highland', 'Meadow', 'Forest'
        ] as streets,
        array['St', 'Ave', 'Rd', 'Blvd', 'Dr', 'Ln', 'Ct', 'Way'] as suffixes
),

-- 997 transcripts of 100 to 400 characters, made once; row n takes one by its hash
-- (making one per row took minutes at a million rows).
transcripts as (
    select pg_catalog.array_agg(t.transcript order by t.k) as t
    from (
        select
            k,
            (
                select pg_catalog.left(pg_catalog.string_agg(w.w[1 + pg_catalog.abs(
                    pg_catalog.hashint8extended(k * 64 + j, 5)
                ) %% pg_catalog.cardinality(w.w)], ' '), 400)
                from words as w, pg_catalog.generate_series(1, 20 + k %% 44) as j
            ) as transcript
        from pg_catalog.generate_series(1, 997) as k
    ) as t
),

n as (
    select
        g,
        pg_catalog.abs(pg_catalog.hashint8extended(g, 1)) as h1,
        pg_catalog.abs(pg_catalog.hashint8extended(g, 2)) as h2,
        pg_catalog.abs(pg_catalog.hashint8extended(g, 3)) as h3
    from pg_catalog.generate_series(%(first)s::bigint, %(last)s::bigint) as g
)

insert into data.incidents (
    dispatched_at, special_call, units, channel, incident_type, address,
    source_audio, original_text, transcript, parsed
)
select
    timestamptz '2026-11-01 00:00:00+00'
    - (n.h1 %% 2592000000) * interval '1 millisecond' as dispatched_at,
    n.h2 %% 50 = 0 as special_call,
    array(
        select v.units[1 + pg_catalog.abs(pg_catalog.hashint8extended(n.g * 8 + k, 4)) %% pg_catalog.cardinality(v.units)]
        from pg_catalog.generate_series(1, 1 + (n.h2 %% 4)::integer) as k
    ) as units,
    v.channels[1 + n.h3 %% pg_catalog.cardinality(v.channels)] as channel,
    v.types[1 + n.h1 %% pg_catalog.cardinality(v.types)] as incident_type,
    (100 + n.h2 %% 9900)::text || ' ' || v.streets[1 + (n.h3 / 7) %% pg_catalog.cardinality(v.streets)] || ' '
    || v.suffixes[1 + (n.h1 / 13) %% pg_catalog.cardinality(v.suffixes)] as address,
    'bench/' || n.g || '.m4a' as source_audio,
    null as original_text,
    tr.t[1 + (n.h3 / 11) %% 997] as transcript,
    pg_catalog.jsonb_build_object('seed_row', n.g) as parsed
from n, vocab as v, transcripts as tr;
