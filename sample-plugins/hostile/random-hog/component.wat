;; Hostile: asks wasi:random for 1 TiB of random bytes in one call. A host must refuse the
;; length before it allocates anything. If the call returned, `handle` would return
;; ok({data: none, actions: []}).
(component
  (import "wasi:random/random@0.2.0" (instance $random
    (export "get-random-bytes" (func (param "len" u64) (result (list u8))))))

  ;; Memory and allocator live in their own module: lowering `get-random-bytes` needs them,
  ;; and the main module needs the lowered function when it is instantiated.
  (core module $Allocator
    (memory (export "memory") 1)
    ;; Allocations start at 1024, above the fixed data and return areas.
    (global $next (mut i32) (i32.const 1024))

    ;; cabi_realloc(old_ptr, old_size, align, new_size): bumps, never frees; copies on resize.
    (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32)
      (result i32)
      (local $ptr i32)
      (local $end i32)
      (local.set $ptr
        (i32.and (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
                 (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ptr) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
        (then
          (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16)))
                                                        (i32.const 0xffff))
                                               (i32.const 16)))
                      (i32.const -1))
            (then unreachable))))
      (global.set $next (local.get $end))
      (if (local.get $old)
        (then (memory.copy (local.get $ptr) (local.get $old) (local.get $old_size))))
      (local.get $ptr)))

  ;; The main module: `describe` and `handle`, on the allocator's memory.
  (core module $Main
    (import "allocator" "memory" (memory 1))
    ;; get-random-bytes(len, return area): the list (ptr, len) is written at the return area.
    (import "wasi" "get-random-bytes" (func $get_random_bytes (param i64 i32)))
    ;; info at 16: name (ptr 64, len 10), version (ptr 96, len 5), event-types (ptr 48, len 1)
    (data (i32.const 16) "\40\00\00\00\0a\00\00\00" "\60\00\00\00\05\00\00\00" "\30\00\00\00\01\00\00\00")
    ;; event-types[0] at 48: (ptr 104, len 1)
    (data (i32.const 48) "\68\00\00\00\01\00\00\00")
    (data (i32.const 64) "random-hog")
    (data (i32.const 96) "0.1.0")
    (data (i32.const 104) "*")
    (func (export "describe") (result i32) (i32.const 16))

    ;; Asks for 1 TiB (1 << 40), the list to be written at 256. Returns a pointer to
    ;; result<outcome, plugin-error>: the area at 128 is never written, so its zeroes read as
    ;; ok({data: none, actions: []}).
    (func (export "handle") (param i32 i32 i32 i32 i32 i32) (result i32)
      (call $get_random_bytes (i64.const 1099511627776) (i32.const 256))
      (i32.const 128)))

  (core instance $allocator (instantiate $Allocator))
  ;; The canonical ABI reads and allocates in this memory.
  (alias core export $allocator "memory" (core memory $memory))
  (alias core export $allocator "cabi_realloc" (core func $realloc))

  (alias export $random "get-random-bytes" (func $get_random_bytes))
  (core func $lowered_get_random_bytes
    (canon lower (func $get_random_bytes) (memory $memory) (realloc $realloc)))
  (core instance $main (instantiate $Main
    (with "allocator" (instance $allocator))
    (with "wasi" (instance (export "get-random-bytes" (func $lowered_get_random_bytes))))))

  ;; The types of wit/v1.0/types.wit, field and case order included.
  (type $event (record (field "id" string) (field "event-type" string) (field "payload" string)))
  (type $action (record (field "kind" string) (field "payload" string)))
  (type $outcome (record (field "data" (option string)) (field "actions" (list $action))))
  (type $error-kind (enum "unsupported-event" "invalid-payload" "invalid-config" "upstream" "denied" "internal"))
  (type $plugin-error (record (field "kind" $error-kind) (field "message" string)))
  (type $info (record (field "name" string) (field "version" string) (field "event-types" (list string))))

  (alias core export $main "describe" (core func $core_describe))
  (alias core export $main "handle" (core func $core_handle))
  (func $describe (result $info) (canon lift (core func $core_describe) (memory $memory) (realloc $realloc)))
  (func $handle (param "event" $event) (result (result $outcome (error $plugin-error)))
    (canon lift (core func $core_handle) (memory $memory) (realloc $realloc)))

  ;; An exported instance must name every type its functions use.
  (instance $handler
    (export "event" (type $event))
    (export "action" (type $action))
    (export "outcome" (type $outcome))
    (export "error-kind" (type $error-kind))
    (export "plugin-error" (type $plugin-error))
    (export "info" (type $info))
    (export "describe" (func $describe))
    (export "handle" (func $handle)))
  (export "nexus:plugin/handler@1.0.0" (instance $handler)))
