;; Hostile: 9 linear memories, the main module's and one in each of 8 instances of a
;; one-page-memory module; 9 core instances, no tables. A host with per-component maxima
;; must refuse it at load for memories. Its handler would return ok({data: none, actions: []}).
(component
  ;; The main module: memory, a bump allocator, `describe` and `handle`.
  (core module $Main
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
      (local.get $ptr))

    ;; info at 16: name (ptr 64, len 10), version (ptr 96, len 5), event-types (ptr 48, len 1)
    (data (i32.const 16) "\40\00\00\00\0a\00\00\00" "\60\00\00\00\05\00\00\00" "\30\00\00\00\01\00\00\00")
    ;; event-types[0] at 48: (ptr 104, len 1)
    (data (i32.const 48) "\68\00\00\00\01\00\00\00")
    (data (i32.const 64) "memory-hog")
    (data (i32.const 96) "0.1.0")
    (data (i32.const 104) "*")
    (func (export "describe") (result i32) (i32.const 16))
    ;; handle(event as 6 flat i32s) returns a pointer to result<outcome, plugin-error>: case at
    ;; 0 (0 ok, 1 err), then ok: data option (case at 4, string at 8), actions list at 16; or
    ;; err: kind at 4, message at 8. The area at 128 is never written, so its zeroes read as
    ;; ok({data: none, actions: []}).
    (func (export "handle") (param i32 i32 i32 i32 i32 i32) (result i32) (i32.const 128)))

  ;; Defines (and keeps private) one 1-page memory.
  (core module $OneMemory (memory 1))

  (core instance $main (instantiate $Main))
  (core instance (instantiate $OneMemory)) (core instance (instantiate $OneMemory))
  (core instance (instantiate $OneMemory)) (core instance (instantiate $OneMemory))
  (core instance (instantiate $OneMemory)) (core instance (instantiate $OneMemory))
  (core instance (instantiate $OneMemory)) (core instance (instantiate $OneMemory))

  ;; The canonical ABI reads and allocates in this memory.
  (alias core export $main "memory" (core memory $memory))
  (alias core export $main "cabi_realloc" (core func $realloc))

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
